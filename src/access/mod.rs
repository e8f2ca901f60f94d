//! Who may do what: tokens and their scopes, ownership of resources, and quotas.
//!
//! A service with no token in force is open (a new user's first run on loopback); once one
//! exists, every call but health checks and the contract needs one.

mod limits;
pub mod tokens;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use crate::domain::{Caller, QuotaOverrides, Quotas, Scope};
use crate::error::{Error, Result};
use crate::store::{OwnedKind, Ownership, Store, TokenRow};

pub use limits::StorageMeter;

/// A token as shown to people and programs: everything but its secret.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenView {
    /// The public part of the token.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Who its resources belong to.
    pub owner: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// Its own quotas, in place of the service's.
    pub quotas: QuotaOverrides,
    /// When it was made.
    pub created_at: String,
    /// When it was last used (to the minute).
    pub last_used_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
}

impl TokenView {
    /// The view of a stored token.
    pub fn new(row: &TokenRow) -> Result<TokenView> {
        Ok(TokenView {
            id: row.id.clone(),
            name: row.name.clone(),
            owner: row.owner.clone(),
            scopes: row.scopes.split(',').map(str::to_string).collect(),
            quotas: serde_json::from_str(&row.quotas)
                .map_err(|err| Error::internal("reading a token's quotas", err))?,
            created_at: row.created_at.clone(),
            last_used_at: row.last_used_at.clone(),
            revoked_at: row.revoked_at.clone(),
        })
    }
}

/// What to record for a new token.
pub struct TokenRequest {
    /// A name for people.
    pub name: Option<String>,
    /// Whose resources it acts on; a new owner of its own when `None`.
    pub owner: Option<String>,
    /// What it may do; at least one.
    pub scopes: Vec<Scope>,
    /// Its own quotas.
    pub quotas: QuotaOverrides,
}

/// Authentication, authorization and quotas for every request; cheap to clone.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    quotas: Quotas,
    storage: StorageMeter,
    limiters: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
    touched: Mutex<HashMap<String, Instant>>,
    started: Instant,
    /// Until when (milliseconds since `started`) the service is known to have no tokens.
    open_until_ms: AtomicU64,
    /// Tokens read recently: a revocation by another process (the `tokens` command) takes
    /// effect within `TOKEN_ROWS_FOR`; one over HTTP at once.
    token_rows: moka::sync::Cache<String, KnownToken>,
    /// Owners of jobs, sweeps and model names, which never change.
    owners: moka::sync::Cache<(OwnedKindKey, String), Ownership>,
}

/// What a token read from the database says, ready for the next request.
#[derive(Clone)]
struct KnownToken {
    secret_sha256: String,
    revoked: bool,
    caller: Caller,
}

/// How long a token read from the database is trusted.
const TOKEN_ROWS_FOR: Duration = Duration::from_secs(1);

/// The kinds whose owner is cached (their owner never changes; a data set's `public` does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum OwnedKindKey {
    Job,
    Sweep,
    Study,
    LrFind,
    Model,
}

/// How long "no token is in force" is trusted.
const OPEN_FOR: Duration = Duration::from_secs(1);

/// How often a token's `last_used_at` is written at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl Gate {
    /// A gate with the service's quotas for tokens that set none of their own.
    pub fn new(store: Store, quotas: Quotas, storage: StorageMeter) -> Gate {
        Gate {
            inner: Arc::new(Inner {
                store,
                quotas,
                storage,
                limiters: Mutex::new(HashMap::new()),
                touched: Mutex::new(HashMap::new()),
                started: Instant::now(),
                open_until_ms: AtomicU64::new(0),
                token_rows: moka::sync::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(TOKEN_ROWS_FOR)
                    .build(),
                owners: moka::sync::Cache::new(100_000),
            }),
        }
    }

    /// The caller that presented `authorization` (the header's value, if any).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller> {
        let Some(header) = authorization else {
            if self.is_open().await? {
                return Ok(Caller::open());
            }
            return Err(unauthorized(
                "this service requires a token: send 'Authorization: Bearer <token>'",
            ));
        };
        let presented = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| unauthorized("the Authorization header must be 'Bearer <token>'"))?;
        let invalid = || unauthorized("the token is not valid: unknown, revoked or mistyped");
        let (id, secret) = tokens::split(presented).ok_or_else(invalid)?;
        let known = match self.inner.token_rows.get(id) {
            Some(known) => known,
            None => {
                let row = self.inner.store.get_token(id).await?.ok_or_else(invalid)?;
                let known = KnownToken {
                    caller: self.caller_of(&row)?,
                    revoked: row.revoked_at.is_some(),
                    secret_sha256: row.secret_sha256,
                };
                self.inner.token_rows.insert(id.to_string(), known.clone());
                known
            }
        };
        if known.revoked || !tokens::matches(secret, &known.secret_sha256) {
            return Err(invalid());
        }
        self.note_use(id);
        self.check_rate(&known.caller)?;
        Ok(known.caller)
    }

    /// Whether no token is in force. A "none" answer is trusted for a second, so an open
    /// service does not ask the database on every request; the first token closes it within
    /// that second.
    async fn is_open(&self) -> Result<bool> {
        let now = self.inner.started.elapsed().as_millis() as u64;
        if now < self.inner.open_until_ms.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let open = !self.inner.store.any_active_token().await?;
        if open {
            self.inner
                .open_until_ms
                .store(now + OPEN_FOR.as_millis() as u64, Ordering::Relaxed);
        }
        Ok(open)
    }

    fn caller_of(&self, row: &TokenRow) -> Result<Caller> {
        let scopes: Vec<Scope> = row.scopes.split(',').filter_map(Scope::parse).collect();
        let overrides: QuotaOverrides = serde_json::from_str(&row.quotas)
            .map_err(|err| Error::internal("reading a token's quotas", err))?;
        let admin = scopes.contains(&Scope::Admin);
        Ok(Caller {
            token_id: Some(row.id.clone()),
            owner: Some(row.owner.clone()),
            scopes,
            quotas: (!admin).then(|| overrides.apply(self.inner.quotas)),
        })
    }

    /// A 403 unless the caller holds `scope`.
    pub fn authorize(&self, caller: &Caller, scope: Scope) -> Result<()> {
        if caller.has(scope) {
            return Ok(());
        }
        let held: Vec<&str> = caller.scopes.iter().map(|s| s.as_str()).collect();
        Err(Error::forbidden(format!(
            "this call needs a token with the '{scope}' scope; this one has {}",
            held.join(", ")
        )))
    }

    /// A 404, worded as for a resource that does not exist, unless the caller may see it;
    /// to change it (`changes`), a public resource must also be the caller's own (a 403
    /// otherwise). Unknown resources pass: the handler answers for them.
    pub async fn check_visible(
        &self,
        caller: &Caller,
        kind: OwnedKind,
        what: &'static str,
        key: &str,
        changes: bool,
    ) -> Result<()> {
        if caller.is_admin() {
            return Ok(());
        }
        let Some(found) = self.ownership(kind, key).await? else {
            return Ok(());
        };
        let own = caller.sees(found.owner.as_deref(), false);
        if !own && !found.public {
            return Err(Error::not_found(what, key));
        }
        if changes && !own {
            return Err(Error::forbidden(format!(
                "{what} '{key}' is shared with every token, but only its owner (or an admin token) may change it"
            )));
        }
        Ok(())
    }

    /// Who owns a resource, from memory for jobs and sweeps once read.
    async fn ownership(&self, kind: OwnedKind, key: &str) -> Result<Option<Ownership>> {
        let cached_kind = match kind {
            OwnedKind::Job => Some(OwnedKindKey::Job),
            OwnedKind::Sweep => Some(OwnedKindKey::Sweep),
            OwnedKind::Study => Some(OwnedKindKey::Study),
            OwnedKind::LrFind => Some(OwnedKindKey::LrFind),
            OwnedKind::Model => Some(OwnedKindKey::Model),
            OwnedKind::Dataset | OwnedKind::Weights => None,
        };
        // `name@alias` belongs to `name`'s owner.
        let key = match kind {
            OwnedKind::Model => key.split_once('@').map_or(key, |(name, _)| name),
            _ => key,
        };
        let Some(cached_kind) = cached_kind else {
            return self.inner.store.ownership(kind, key).await;
        };
        let cache_key = (cached_kind, key.to_string());
        if let Some(found) = self.inner.owners.get(&cache_key) {
            return Ok(Some(found));
        }
        let found = self.inner.store.ownership(kind, key).await?;
        if let Some(found) = &found {
            self.inner.owners.insert(cache_key, found.clone());
        }
        Ok(found)
    }

    /// Revokes a token now; false when there is none or it was revoked already.
    pub async fn revoke_token(&self, id: &str) -> Result<bool> {
        let revoked = self.inner.store.revoke_token(id).await?;
        self.inner.token_rows.invalidate(id);
        Ok(revoked)
    }

    /// The data folder's meter of what each owner holds.
    pub fn storage(&self) -> &StorageMeter {
        &self.inner.storage
    }

    /// Makes a token; the returned text is the only copy of its secret.
    pub async fn create_token(&self, request: TokenRequest) -> Result<(String, TokenRow)> {
        create_token(&self.inner.store, request).await
    }

    fn check_rate(&self, caller: &Caller) -> Result<()> {
        let (Some(quotas), Some(id)) = (caller.quotas, caller.token_id.as_ref()) else {
            return Ok(());
        };
        let Some(per_second) = NonZeroU32::new(quotas.requests_per_second) else {
            return Ok(());
        };
        let limiter = {
            let mut limiters = self
                .inner
                .limiters
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let entry = limiters
                .entry(id.clone())
                .or_insert_with(|| (0, Arc::new(limiter(per_second))));
            if entry.0 != per_second.get() {
                *entry = (per_second.get(), Arc::new(limiter(per_second)));
            }
            entry.1.clone()
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Error::quota(
                format!(
                    "rate limit: this token may make {per_second} requests per second (bursts of {})",
                    per_second.get().saturating_mul(2)
                ),
                Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            )
        })
    }

    fn note_use(&self, id: &str) {
        let now = Instant::now();
        {
            let mut touched = self.inner.touched.lock().unwrap_or_else(|p| p.into_inner());
            match touched.get(id) {
                Some(last) if now.duration_since(*last) < TOUCH_EVERY => return,
                _ => touched.insert(id.to_string(), now),
            };
        }
        let store = self.inner.store.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(err) = store.touch_token(&id).await {
                tracing::debug!(error = %err, "could not note a token's use");
            }
        });
    }
}

fn limiter(per_second: NonZeroU32) -> DefaultDirectRateLimiter {
    let burst = per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1));
    governor::RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst))
}

fn unauthorized(message: &str) -> Error {
    Error::Unauthorized {
        message: message.to_string(),
    }
}

/// Makes a token in `store`; the returned text is the only copy of its secret. Used by the
/// `tokens` command, which needs no running server.
pub async fn create_token(store: &Store, request: TokenRequest) -> Result<(String, TokenRow)> {
    if request.scopes.is_empty() {
        return Err(Error::invalid(
            "scope",
            "give at least one scope: admin, train, predict or read",
        ));
    }
    request.quotas.check()?;
    let made = tokens::new_secret();
    let mut scopes = request.scopes;
    scopes.sort();
    scopes.dedup();
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let name = request.name.unwrap_or_else(|| format!("token-{}", made.id));
    check_label("name", &name)?;
    let owner = request.owner.unwrap_or_else(|| made.id.clone());
    check_label("owner", &owner)?;
    let row = TokenRow {
        id: made.id.clone(),
        name,
        owner,
        scopes: scopes.join(","),
        secret_sha256: made.secret_sha256,
        quotas: serde_json::to_string(&request.quotas)
            .map_err(|err| Error::internal("encoding quotas", err))?,
        created_at: String::new(),
        last_used_at: None,
        revoked_at: None,
    };
    let row = store.insert_token(&row).await?;
    tracing::info!(token_id = %row.id, name = %row.name, scopes = %row.scopes, "token created");
    Ok((made.token, row))
}

/// Token names and owners: 1 to 64 ASCII letters, digits, `-`, `_`, `.` and `@`, so they read
/// the same in every list and log.
fn check_label(field: &str, value: &str) -> Result<()> {
    let valid = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("'{value}' is not valid: use 1 to 64 letters, digits, '-', '_', '.' or '@'"),
        ))
    }
}
