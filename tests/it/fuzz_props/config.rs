//! Configuration parsing from arbitrary, TOML-like, extreme and mutated text.

use super::*;

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), 0..VALUES.len()).prop_map(|(l, v)| Mutation::ReplaceValue(l, v)),
        (any::<usize>(), "[a-z_\\[\\]=\" .0-9]{0,30}")
            .prop_map(|(l, t)| Mutation::InsertLine(l, t)),
        any::<usize>().prop_map(Mutation::Uncomment),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
            Mutation::ReplaceValue(i, v) => {
                // The line-th line that has a value.
                let with_value: Vec<usize> = (0..n).filter(|&j| lines[j].contains('=')).collect();
                if let Some(&j) = with_value.get(i % with_value.len().max(1)) {
                    let key = lines[j].split('=').next().unwrap_or_default().to_owned();
                    lines[j] = format!("{key}= {}", VALUES[*v]);
                }
            }
            Mutation::InsertLine(i, t) => lines.insert(i % (n + 1), t.clone()),
            Mutation::Uncomment(i) => {
                let j = i % n;
                lines[j] = lines[j].trim_start_matches(['#', ' ']).to_owned();
            }
            Mutation::Truncate(i) => {
                let j = i % n;
                let cut = lines[j].len() / 2;
                lines[j] = lines[j].chars().take(cut).collect();
            }
        }
    }
    lines.join("\n")
}

/// Everything a loaded configuration feeds, exercised; none of it may panic.
fn use_settings(text: &str) {
    match Settings::from_toml(text) {
        Ok(settings) => {
            let _ = settings.validate();
            let _ = settings.to_redacted_toml();
            let _ = settings.store.url.to_string();
            let _ = settings.default_account().vod_base_url();
            for source in &settings.sources {
                let _ = vod_purge::webhook::Source::new(source);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn config_from_arbitrary_text(text in any::<String>()) {
        use_settings(&text);
    }

    #[test]
    fn config_from_toml_like_text(text in "(\\[{1,2}[a-z_]{0,8}\\]{1,2}\n|[a-z_]{1,12} = (\"[a-z0-9:/. ]{0,12}\"|[0-9-]{1,22}|true|\\[\\])\n){0,12}") {
        use_settings(&text);
    }

    /// A complete, valid file with one to three values replaced by extreme or odd ones, so that
    /// the checks after the first failing one are reached too.
    #[test]
    fn config_with_extreme_values(
        replacements in proptest::collection::vec((any::<usize>(), 0..VALUES.len()), 1..4),
    ) {
        let mutations: Vec<Mutation> = replacements
            .into_iter()
            .map(|(line, value)| Mutation::ReplaceValue(line, value))
            .collect();
        use_settings(&mutate(VALID_CONFIGS[2], &mutations));
    }

    #[test]
    fn config_from_mutated_valid_files(
        which in 0..VALID_CONFIGS.len(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        use_settings(&mutate(VALID_CONFIGS[which], &mutations));
    }
}
