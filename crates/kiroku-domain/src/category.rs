//! Incident categories and their number prefixes.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub key: String,
    pub label_ja: String,
    pub label_en: String,
    /// Numbers read `{prefix}-{year}-{n:03}`, e.g. `DB-2026-001`.
    pub prefix: String,
}

/// The categories an installation accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub categories: Vec<Category>,
}

fn category(key: &str, ja: &str, en: &str, prefix: &str) -> Category {
    Category {
        key: key.into(),
        label_ja: ja.into(),
        label_en: en.into(),
        prefix: prefix.into(),
    }
}

impl Default for Catalog {
    /// The five patterns of the 始末書 template, and database incidents as
    /// the DB incident report numbers them.
    fn default() -> Self {
        Catalog {
            categories: vec![
                category("information_leak", "情報漏洩", "Information leak", "LEAK"),
                category("server_failure", "サーバ障害", "Server failure", "SRV"),
                category("data_loss", "データ消失", "Data loss", "LOSS"),
                category(
                    "unauthorized_access",
                    "不正アクセス",
                    "Unauthorized access",
                    "SEC",
                ),
                category("service_outage", "サービス停止", "Service outage", "OUT"),
                category("database", "データベース障害", "Database incident", "DB"),
            ],
        }
    }
}

impl Catalog {
    pub fn get(&self, key: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.key == key)
    }

    pub fn keys(&self) -> Vec<&str> {
        self.categories.iter().map(|c| c.key.as_str()).collect()
    }

    /// Checks that keys and prefixes are well-formed and unique.
    pub fn check(&self) -> Result<(), String> {
        if self.categories.is_empty() {
            return Err("at least one category is needed".into());
        }
        for (i, c) in self.categories.iter().enumerate() {
            if c.key.is_empty()
                || !c
                    .key
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
            {
                return Err(format!(
                    "category key {:?} must be lowercase letters, digits and _",
                    c.key
                ));
            }
            if c.prefix.is_empty()
                || c.prefix.len() > 16
                || !c
                    .prefix
                    .chars()
                    .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit())
            {
                return Err(format!(
                    "category prefix {:?} must be 1–16 uppercase letters or digits",
                    c.prefix
                ));
            }
            if self.categories[..i].iter().any(|o| o.key == c.key) {
                return Err(format!("category key {:?} appears twice", c.key));
            }
        }
        Ok(())
    }
}

/// `DB-2026-001`: at least three digits, more once a year passes 999.
pub fn incident_number(prefix: &str, year: i16, n: i64) -> String {
    format!("{prefix}-{year}-{n:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_zero_padded() {
        assert_eq!(incident_number("DB", 2026, 1), "DB-2026-001");
        assert_eq!(incident_number("DB", 2026, 1234), "DB-2026-1234");
    }

    #[test]
    fn default_catalog_is_valid() {
        Catalog::default().check().unwrap();
        let mut bad = Catalog::default();
        bad.categories[0].prefix = "db".into();
        assert!(bad.check().is_err());
    }
}
