//! Webhook sources (placeholder until the source abstraction lands).

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct SourceConfig {
    pub name: String,
}

impl SourceConfig {
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
