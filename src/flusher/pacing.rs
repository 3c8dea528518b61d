//! The rate to pace calls at when VOD throttles below the configured rate: CUBIC, as the
//! adaptive retry mode of the AWS SDKs uses it for a token bucket. Pure; the time is an argument
//! (seconds since any fixed instant).
//!
//! The account's 50 calls per second are shared with the console, other services and scripts,
//! so the rate really available moves. On a throttled answer the rate is cut to `BETA` (0.7) of
//! the rate that was getting through (the successful answers of the last second, or the target
//! rate if lower), which becomes the curve's plateau `last_max`. The rate then follows
//! `C·(t − K)³ + last_max`: it climbs back quickly, flattens near the plateau, where it was
//! throttled before, and then probes above it ever faster, so that a limit that went back up is
//! found within seconds.
//!
//! One throttling episode is one cut: answers to calls sent before the last cut, or within a
//! second after it, say nothing new about the rate after it (TCP reduces once per window for the
//! same reason, and a per-second counter that is full refuses until its second is over). Without
//! this, the calls already in flight when the limit was hit cut the rate several times over.

/// The share of the rate kept on a cut.
pub const BETA: f64 = 0.7;
/// How fast the rate grows back (calls per second per second³).
pub const C: f64 = 0.4;
/// The rate never goes below one call per second.
const FLOOR: f64 = 1.0;
/// After a cut, throttled answers to calls sent within this many seconds belong to the same
/// episode: a per-second counter that is full keeps refusing until its second is over, whatever
/// the new pace.
const EPISODE: f64 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cubic {
    max: f64,
    /// The plateau: the rate that was getting through at the last cut.
    last_max: f64,
    /// When the last cut happened; `None`: no throttling yet, or fully recovered.
    cut_at: Option<f64>,
}

impl Cubic {
    /// Pacing at `max` calls per second (the configured rate, never exceeded).
    pub fn new(max: f64) -> Cubic {
        Cubic {
            max,
            last_max: max,
            cut_at: None,
        }
    }

    /// The rate to pace calls at, at time `now`.
    pub fn rate(&self, now: f64) -> f64 {
        match self.cut_at {
            None => self.max,
            Some(cut_at) => {
                let k = (self.last_max * (1.0 - BETA) / C).cbrt();
                let t = (now - cut_at).max(0.0);
                (C * (t - k).powi(3) + self.last_max).clamp(FLOOR, self.max)
            }
        }
    }

    /// A call sent at `sent_at` was throttled, seen at `now`, with `got_through` successful
    /// answers per second lately. Returns true when this cut the rate (a new episode).
    pub fn on_throttled(&mut self, now: f64, sent_at: f64, got_through: f64) -> bool {
        if self.cut_at.is_some_and(|cut_at| sent_at < cut_at + EPISODE) {
            return false;
        }
        let current = self.rate(now);
        let basis = if got_through > 0.0 {
            got_through.min(current)
        } else {
            current
        };
        self.last_max = basis.max(FLOOR);
        self.cut_at = Some(now);
        true
    }

    /// Forgets a cut once the rate is back at the maximum.
    pub fn settle(&mut self, now: f64) {
        if self.cut_at.is_some() && self.rate(now) >= self.max {
            self.cut_at = None;
            self.last_max = self.max;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 0.05
    }

    // The expected rates are literals, worked out by hand from the curve's definition, so that
    // a wrong formula cannot agree with itself.

    #[test]
    fn a_cut_keeps_seven_tenths_of_what_got_through_and_climbs_back_in_a_curve() {
        let mut c = Cubic::new(50.0);
        assert_eq!(c.rate(0.0), 50.0);
        // Throttled at 50 with 40 a second getting through: the plateau is 40, the rate 28.
        assert!(c.on_throttled(10.0, 9.9, 40.0));
        // K = cbrt(40 · 0.3 / 0.4) = cbrt(30) = 3.1072 s to climb back to the plateau.
        let table = [
            (10.0, 28.0),
            (10.5, 32.911), // 40 − 0.4 · (3.1072 − 0.5)³
            (13.1072, 40.0),
            (14.1072, 40.4),
            (15.1072, 43.2),
            (16.1072, 50.0), // 40 + 0.4 · 27 = 50.8, capped at the maximum
            (30.0, 50.0),
        ];
        for (now, want) in table {
            assert!(
                near(c.rate(now), want),
                "at {now}: {} != {want}",
                c.rate(now)
            );
        }
        c.settle(30.0);
        assert_eq!(c, Cubic::new(50.0));
    }

    #[test]
    fn answers_to_calls_sent_before_the_cut_do_not_cut_again() {
        let mut c = Cubic::new(50.0);
        assert!(
            c.on_throttled(5.0, 4.99, 0.0),
            "no figure of what got through: the rate itself"
        );
        assert!(near(c.rate(5.0), 35.0));
        // Calls that were in flight when the limit was hit.
        for sent_at in [4.98, 4.995, 4.999] {
            assert!(!c.on_throttled(5.01, sent_at, 30.0));
        }
        assert!(near(c.rate(5.0), 35.0));
        // Within a second of the cut: the same episode.
        assert!(!c.on_throttled(5.9, 5.8, 0.0));
        // A call sent a second after the cut is throttled: a new episode, from the rate then.
        // One second after the cut of 50 (K = cbrt(37.5) = 3.3472): 50 − 0.4 · 2.3472³ = 44.828,
        // and 0.7 of that is 31.379.
        assert!(near(c.rate(6.0), 44.828), "{}", c.rate(6.0));
        assert!(c.on_throttled(6.0, 6.0, 0.0));
        assert!(near(c.rate(6.0), 31.379), "{}", c.rate(6.0));
    }

    #[test]
    fn the_rate_never_drops_below_one_call_a_second() {
        let mut c = Cubic::new(50.0);
        for i in 0..30 {
            let t = f64::from(i);
            c.on_throttled(t, t, 0.5);
        }
        assert_eq!(c.rate(29.0), 1.0, "0.7 of one call a second, floored");
        // From the plateau of one call a second (K = cbrt(0.75) = 0.9086) the curve climbs back:
        // 1 + 0.4 · (t − 0.9086)³ seconds after the last cut.
        let table = [(30.0, 1.0003), (31.0, 1.520), (32.0, 4.659), (33.0, 12.818)];
        for (now, want) in table {
            assert!(
                near(c.rate(now), want),
                "at {now}: {} != {want}",
                c.rate(now)
            );
        }
    }
}
