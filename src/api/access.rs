//! Who may call a route: the access decision every entry of `ROUTES` carries.

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
