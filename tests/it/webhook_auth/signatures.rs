//! Signed deliveries: accepted, rotated, wrong, tampered, missing, garbled, out of tolerance.

use super::*;

#[test]
fn signed_deliveries_are_accepted() {
    for case in cases() {
        let at = Ts(case.signed_at_ms);
        let (body, pairs) = (case.body(), case.pairs());
        for now in [
            at,
            at + Duration::from_secs(60),
            at - Duration::from_secs(60),
            at + TOLERANCE,
        ] {
            assert_eq!(
                case.check(&[&case.signed_with], &body, &pairs, now),
                Ok(()),
                "{} at {now:?}",
                case.name
            );
        }
    }
}

#[test]
fn rotated_secrets_are_all_accepted() {
    for case in cases() {
        let (body, pairs, now) = (case.body(), case.pairs(), Ts(case.signed_at_ms));
        for secrets in [
            [&case.other_secret, &case.signed_with],
            [&case.signed_with, &case.other_secret],
        ] {
            let secrets = secrets.map(String::as_str);
            assert_eq!(
                case.check(&secrets, &body, &pairs, now),
                Ok(()),
                "{}",
                case.name
            );
        }
    }
}

#[test]
fn wrong_secret_is_refused() {
    for case in cases() {
        let (body, pairs, now) = (case.body(), case.pairs(), Ts(case.signed_at_ms));
        assert_eq!(
            case.check(&[&case.other_secret], &body, &pairs, now),
            Err("invalid_signature"),
            "{}",
            case.name
        );
    }
}

#[test]
fn tampered_body_is_refused() {
    for case in cases() {
        let (pairs, now) = (case.pairs(), Ts(case.signed_at_ms));
        let body = case.body();
        let mut flipped = body.clone();
        let last_digit = flipped
            .iter()
            .rposition(u8::is_ascii_digit)
            .expect("body has a digit");
        flipped[last_digit] = if flipped[last_digit] == b'9' {
            b'8'
        } else {
            flipped[last_digit] + 1
        };
        let mut longer = body.clone();
        longer.push(b' ');
        for tampered in [flipped, longer, Vec::new()] {
            assert_eq!(
                case.check(&[&case.signed_with], &tampered, &pairs, now),
                Err("invalid_signature"),
                "{}",
                case.name
            );
        }
    }
}

#[test]
fn missing_headers_are_refused() {
    for case in cases() {
        let (body, now) = (case.body(), Ts(case.signed_at_ms));
        for missing in &case.required_headers {
            let pairs: Vec<_> = case
                .pairs()
                .into_iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case(missing))
                .collect();
            assert_eq!(
                case.check(&[&case.signed_with], &body, &pairs, now),
                Err("missing_signature"),
                "{} without {missing}",
                case.name
            );
        }
    }
}

#[test]
fn garbled_signature_header_is_malformed() {
    for case in cases() {
        let (body, now) = (case.body(), Ts(case.signed_at_ms));
        let pairs: Vec<_> = case
            .pairs()
            .into_iter()
            .map(|(k, v)| {
                if k.eq_ignore_ascii_case(&case.signature_header) {
                    (k, "garbage!".to_owned())
                } else {
                    (k, v)
                }
            })
            .collect();
        assert_eq!(
            case.check(&[&case.signed_with], &body, &pairs, now),
            Err("malformed_signature"),
            "{}",
            case.name
        );
    }
}

#[test]
fn timestamps_outside_tolerance_are_refused() {
    let one_ms = Duration::from_millis(1);
    for case in cases().into_iter().filter(|c| c.source["auth"] != "hmac") {
        let (body, pairs, at) = (case.body(), case.pairs(), Ts(case.signed_at_ms));
        for now in [
            at + TOLERANCE + Duration::from_secs(1),
            at - TOLERANCE - one_ms,
            Ts(0),
            Ts(i64::MAX),
        ] {
            assert_eq!(
                case.check(&[&case.signed_with], &body, &pairs, now),
                Err("timestamp_out_of_tolerance"),
                "{} at {now:?}",
                case.name
            );
        }
    }
}

#[test]
fn tolerance_is_configurable() {
    for case in cases().into_iter().filter(|c| c.source["auth"] != "hmac") {
        let at = Ts(case.signed_at_ms);
        let mut cfg = case.source.clone();
        cfg["secrets"] = json!([case.signed_with]);
        cfg["tolerance"] = json!("10m");
        let wide = source(cfg.clone());
        assert_eq!(
            case.as_signed(|req| wide.verify(req, at + Duration::from_secs(9 * 60)))
                .map_err(|e| e.code()),
            Ok(()),
            "{}",
            case.name
        );
        cfg["tolerance"] = json!("30s");
        let narrow = source(cfg);
        assert_eq!(
            case.as_signed(|req| narrow.verify(req, at + Duration::from_secs(31)))
                .map_err(|e| e.code()),
            Err("timestamp_out_of_tolerance"),
            "{}",
            case.name
        );
    }
}
