//! Who may call a route: the access decision every entry of `ROUTES` carries, enforced before
//! the handler runs.

use axum::extract::{FromRequestParts, Query, RawPathParams, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::domain::Scope;
use crate::error::Error;
use crate::store::OwnedKind;

/// The scope a route needs. `admin` tokens may call every route; `train` tokens may also call
/// `Read` routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token needed, even when tokens exist (health checks and the contract).
    Open,
    /// GETs of what the caller may see.
    Read,
    /// Submitting, cancelling and deleting the caller's own jobs and sweeps; uploads.
    Train,
    /// Inference.
    Predict,
    /// Only `admin` tokens.
    Admin,
}

impl Access {
    /// The scope it needs; `None` for open routes.
    pub fn scope(self) -> Option<Scope> {
        match self {
            Access::Open => None,
            Access::Read => Some(Scope::Read),
            Access::Train => Some(Scope::Train),
            Access::Predict => Some(Scope::Predict),
            Access::Admin => Some(Scope::Admin),
        }
    }
}

/// What one route's guard checks.
#[derive(Clone)]
pub(super) struct Guard {
    pub state: AppState,
    pub access: Access,
    /// The resource its first path parameter names, and what a 404 calls it.
    pub resource: Option<(OwnedKind, &'static str)>,
    /// Whether its query names jobs (`jobs=a,b`, `a=`, `b=`): the comparisons.
    pub jobs_in_query: bool,
}

/// Whether a route's query names jobs that must be the caller's.
pub(super) fn names_jobs_in_query(path: &str) -> bool {
    path.starts_with("/v1/compare")
}

/// The resource a route's first path parameter names.
pub(super) fn resource_of(path: &str) -> Option<(OwnedKind, &'static str)> {
    let rest = path
        .strip_prefix("/v1/")
        .or_else(|| path.strip_prefix("/v2/"))?;
    let (collection, tail) = rest.split_once('/')?;
    if !tail.starts_with('{') {
        return None;
    }
    match collection {
        "jobs" => Some((OwnedKind::Job, "job")),
        "models" => Some((OwnedKind::Model, "model")),
        "sweeps" => Some((OwnedKind::Sweep, "sweep")),
        "studies" => Some((OwnedKind::Study, "study")),
        "lr-finder" => Some((OwnedKind::LrFind, "learning-rate test")),
        "datasets" => Some((OwnedKind::Dataset, "data set")),
        "weights" => Some((OwnedKind::Weights, "weights")),
        _ => None,
    }
}

/// Authenticates the caller, checks the route's scope and that the resource it names is the
/// caller's to see, and hands the caller to the handler as an extension.
pub(super) async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    match check(&guard, request).await {
        Ok(request) => next.run(request).await,
        Err(err) => {
            let (_, code) = super::error::classify(&err);
            metrics::counter!(crate::prometheus::ACCESS_REFUSED, "code" => code).increment(1);
            ApiError(err).into_response()
        }
    }
}

async fn check(guard: &Guard, request: Request) -> Result<Request, Error> {
    let Some(scope) = guard.access.scope() else {
        return Ok(request);
    };
    let gate = &guard.state.gate;
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .map(|value| {
            value.to_str().map_err(|_| Error::Unauthorized {
                message: "the Authorization header is not readable text".into(),
            })
        })
        .transpose()?;
    let caller = gate.authenticate(header).await?;
    if let Some(id) = &caller.token_id {
        tracing::Span::current().record("token", id.as_str());
    }
    gate.authorize(&caller, scope)?;
    let (mut parts, body) = request.into_parts();
    if let Some((kind, what)) = guard.resource
        && let Ok(params) = RawPathParams::from_request_parts(&mut parts, &()).await
        && let Some((_, key)) = params.iter().next()
    {
        let changes = guard.access != Access::Read;
        gate.check_visible(&caller, kind, what, key, changes)
            .await?;
    }
    if guard.jobs_in_query
        && !caller.is_admin()
        && let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
    {
        for (name, value) in pairs {
            if matches!(name.as_str(), "jobs" | "a" | "b") {
                // The handler refuses more than MAX_COMPARED ids before reading any of them.
                let ids = value.split(',').map(str::trim).filter(|id| !id.is_empty());
                for id in ids.take(super::compare::MAX_COMPARED) {
                    gate.check_visible(&caller, OwnedKind::Job, "job", id, false)
                        .await?;
                }
            }
        }
    }
    parts.extensions.insert(caller);
    Ok(Request::from_parts(parts, body))
}
