//! The modules form layers, each importing only from the layers below it: no cycle, no import up
//! (ARCHITECTURE.md, "Layers"). Read off the sources: every `crate::<module>` a module names.

use std::collections::BTreeSet;
use std::path::Path;

/// Bottom first. The entry points (`lanes`, `workers`, `startup`, `main`, `lib`) sit on top.
const LAYERS: [&[&str]; 9] = [
    &["domain", "acs", "telemetry"],
    &["metrics", "queue", "webhook"],
    &["credentials"],
    &["vod"],
    &["store"],
    &["flusher"],
    &["config"],
    &["api"],
    &["sim"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `crate::<name>` in the Rust files under `path` (a directory or one file).
fn imports(path: &Path, found: &mut BTreeSet<String>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            imports(&entry.unwrap().path(), found);
        }
        return;
    }
    if !path.is_file() || path.extension().is_none_or(|e| e != "rs") {
        return;
    }
    let text = std::fs::read_to_string(path).unwrap();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
}

#[test]
fn modules_import_only_from_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (level, layer) in LAYERS.iter().enumerate() {
        for module in *layer {
            let mut found = BTreeSet::new();
            let dir = src.join(module);
            if dir.is_dir() {
                imports(&dir, &mut found);
            }
            imports(&src.join(format!("{module}.rs")), &mut found);
            for import in found.iter().filter(|i| i.as_str() != *module) {
                match layer_of(import) {
                    Some(l) if l < level => {}
                    Some(_) => wrong.push(format!("{module} imports {import}, not below it")),
                    None => wrong.push(format!("{module} imports {import}, which is in no layer")),
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
