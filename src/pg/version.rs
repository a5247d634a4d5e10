//! The server's major version, read once per connection (`server_version_num`), so that every
//! query can be picked for the catalogs of that version.

use std::fmt;

/// Oldest and newest major versions dbagent is built and tested for.
pub const MIN_SUPPORTED_MAJOR: u32 = 13;
pub const MAX_SUPPORTED_MAJOR: u32 = 18;

/// A PostgreSQL server version, e.g. 150018 / "15.18".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerVersion {
    /// `server_version_num`, e.g. 180006.
    pub num: u32,
    /// `server_version` as the server reports it, e.g. "18.6".
    pub text: String,
}

impl ServerVersion {
    pub fn from_num(num: u32, text: impl Into<String>) -> ServerVersion {
        ServerVersion {
            num,
            text: text.into(),
        }
    }

    /// The major version: 15 for 150018.
    pub fn major(&self) -> u32 {
        self.num / 10_000
    }

    pub fn is_supported(&self) -> bool {
        (MIN_SUPPORTED_MAJOR..=MAX_SUPPORTED_MAJOR).contains(&self.major())
    }

    /// Reads the version of the server `client` is connected to.
    pub async fn detect(
        client: &tokio_postgres::Client,
    ) -> Result<ServerVersion, tokio_postgres::Error> {
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
                &[],
            )
            .await?;
        let num: i32 = row.get(0);
        let text: String = row.get(1);
        Ok(ServerVersion::from_num(num.max(0).unsigned_abs(), text))
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_and_support_window() {
        assert_eq!(ServerVersion::from_num(150018, "15.18").major(), 15);
        assert!(ServerVersion::from_num(130000, "13.0").is_supported());
        assert!(ServerVersion::from_num(180006, "18.6").is_supported());
        assert!(!ServerVersion::from_num(120022, "12.22").is_supported());
        assert!(!ServerVersion::from_num(190000, "19.0").is_supported());
    }
}
