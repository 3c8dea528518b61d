//! The client signer reproduces every published and captured signature vector.

use std::collections::BTreeMap;

use vod_purge::vod::signing::{sign, string_to_sign};

#[derive(serde::Deserialize)]
pub struct Vector {
    pub name: String,
    pub method: String,
    pub params: BTreeMap<String, String>,
    pub secret: String,
    pub string_to_sign: String,
    pub signature: String,
    /// The request as an official SDK sent it, where it was captured.
    #[serde(default)]
    pub wire: Option<Wire>,
}

/// A captured request: path and query as sent, and the body with its content type.
#[derive(serde::Deserialize)]
pub struct Wire {
    pub url_path: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub content_type: Option<String>,
}

pub fn vectors() -> Vec<Vector> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vod-signature-vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture parses")
}

#[test]
fn every_vector_reproduces() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 10);
    for v in &vectors {
        assert_eq!(
            string_to_sign(&v.method, &v.params),
            v.string_to_sign,
            "{}",
            v.name
        );
        assert_eq!(
            sign(&v.method, &v.params, &v.secret),
            v.signature,
            "{}",
            v.name
        );
    }
}

#[test]
fn a_changed_value_changes_the_signature() {
    for v in vectors() {
        let mut params = v.params.clone();
        params.insert("Zzz".to_owned(), String::new());
        assert_ne!(
            sign(&v.method, &params, &v.secret),
            v.signature,
            "{}",
            v.name
        );
        assert_ne!(
            sign(&v.method, &v.params, "other"),
            v.signature,
            "{}",
            v.name
        );
    }
}
