//! API tokens: only the SHA-256 of each secret is kept.

use sqlx::FromRow;

use super::{NOW, Store, db_error};
use crate::error::{Error, Result};

/// A token as stored.
#[derive(Clone, Debug, FromRow)]
pub struct TokenRow {
    /// The public part of the token, shown in lists and logs.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Who its resources belong to.
    pub owner: String,
    /// Comma-separated scopes.
    pub scopes: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// JSON object of quota overrides.
    pub quotas: String,
    /// When it was made.
    pub created_at: String,
    /// When it was last used (updated at most once a minute).
    pub last_used_at: Option<String>,
    /// When it was revoked; revoked tokens are refused.
    pub revoked_at: Option<String>,
}

const COLUMNS: &str =
    "id, name, owner, scopes, secret_sha256, quotas, created_at, last_used_at, revoked_at";

impl Store {
    /// Records a new token.
    pub async fn insert_token(&self, token: &TokenRow) -> Result<TokenRow> {
        let sql = format!(
            "INSERT INTO tokens (id, name, owner, scopes, secret_sha256, quotas, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, {NOW}) RETURNING {COLUMNS}"
        );
        let rows = sqlx::query_as::<_, TokenRow>(&sql)
            .bind(&token.id)
            .bind(&token.name)
            .bind(&token.owner)
            .bind(&token.scopes)
            .bind(&token.secret_sha256)
            .bind(&token.quotas)
            .fetch_all(&self.writer)
            .await
            .map_err(db_error("recording a token"))?;
        rows.into_iter()
            .next()
            .ok_or_else(|| Error::Internal("inserting a token returned no row".into()))
    }

    /// A token by id, revoked or not.
    pub async fn get_token(&self, id: &str) -> Result<Option<TokenRow>> {
        let sql = format!("SELECT {COLUMNS} FROM tokens WHERE id = ?");
        sqlx::query_as::<_, TokenRow>(&sql)
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error("reading a token"))
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>> {
        let sql = format!("SELECT {COLUMNS} FROM tokens ORDER BY created_at, id");
        sqlx::query_as::<_, TokenRow>(&sql)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing tokens"))
    }

    /// Whether any token is in force, which turns authentication on.
    pub async fn any_active_token(&self) -> Result<bool> {
        sqlx::query_scalar::<_, i64>(
            "SELECT EXISTS (SELECT 1 FROM tokens WHERE revoked_at IS NULL)",
        )
        .fetch_one(&self.reader)
        .await
        .map(|found| found != 0)
        .map_err(db_error("looking for tokens"))
    }

    /// Revokes a token; false when there is no such token or it was revoked already.
    pub async fn revoke_token(&self, id: &str) -> Result<bool> {
        let sql = format!(
            "UPDATE tokens SET revoked_at = {NOW} WHERE id = ? AND revoked_at IS NULL RETURNING id"
        );
        let rows: Vec<(String,)> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_all(&self.writer)
            .await
            .map_err(db_error("revoking a token"))?;
        Ok(!rows.is_empty())
    }

    /// Notes that a token was used just now.
    pub async fn touch_token(&self, id: &str) -> Result<()> {
        let sql = format!("UPDATE tokens SET last_used_at = {NOW} WHERE id = ?");
        sqlx::query(&sql)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(db_error("noting a token's use"))?;
        Ok(())
    }
}
