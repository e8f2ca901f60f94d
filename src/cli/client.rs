//! The HTTP client every command speaks through, the flags that say where the service is, and
//! what can go wrong, each with its exit code.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::{Value, json};

/// How long to wait for a connection before calling the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one read may wait. An event stream carries a keep-alive comment every 15 s, so a
/// stream silent for this long has lost its server.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the service is and how to speak to it; every client command takes these.
#[derive(Clone, Debug, clap::Args)]
pub struct Connection {
    /// The service's base URL.
    #[arg(
        long,
        env = "TRAINSERVE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub(crate) server: String,
    /// An API token, sent as `Authorization: Bearer <token>`; needed once the service has
    /// tokens (`trainserve tokens create`).
    #[arg(long, env = "TRAINSERVE_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Print the server's JSON instead of text, for piping; errors too, on standard error.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Why a command could not do what it was asked.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The server refused the request (a 4xx); `body` is its JSON error.
    Rejected { status: StatusCode, body: Value },
    /// The server failed the request (a 5xx).
    ServerFailed { status: StatusCode, body: Value },
    /// Something on this side cannot be used: a file, a flag, the server's URL.
    BadInput(String),
    /// No answer from the server: refused, timed out, or cut off.
    Unreachable { server: String, reason: String },
    /// The server answered something this client cannot read.
    Unexpected(String),
}

impl CliError {
    /// The process's exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Rejected { .. } | CliError::BadInput(_) => 2,
            CliError::Unreachable { .. } => 3,
            CliError::ServerFailed { .. } | CliError::Unexpected(_) => 1,
        }
    }

    /// Whether waiting and trying again might help (the connection, not the request, failed).
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, CliError::Unreachable { .. })
    }

    /// Prints the error on standard error: the server's JSON as it came with `--json`, else
    /// one line for people.
    pub(crate) fn report(&self, command: &str, json: bool) {
        if json {
            let body = match self {
                CliError::Rejected { body, .. } | CliError::ServerFailed { body, .. }
                    if body.is_object() =>
                {
                    body.clone()
                }
                other => json!({ "error": other.describe(), "code": other.code() }),
            };
            eprintln!("{body}");
        } else {
            eprintln!("trainserve {command}: {}", self.describe());
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CliError::Rejected { .. } | CliError::ServerFailed { .. } => "server_error",
            CliError::BadInput(_) => "bad_input",
            CliError::Unreachable { .. } => "unreachable",
            CliError::Unexpected(_) => "unexpected_answer",
        }
    }

    fn describe(&self) -> String {
        match self {
            CliError::Rejected { status, body } | CliError::ServerFailed { status, body } => {
                let mut line = format!("the server answered {}", status.as_u16());
                if let Some(code) = body["code"].as_str() {
                    line.push_str(&format!(" {code}"));
                }
                if let Some(field) = body["field"].as_str() {
                    line.push_str(&format!(" (field {field})"));
                }
                let message = match body {
                    Value::String(text) => text.trim(),
                    _ => body["error"].as_str().unwrap_or_default(),
                };
                if !message.is_empty() {
                    line.push_str(&format!(": {message}"));
                }
                if *status == StatusCode::UNAUTHORIZED {
                    line.push_str("; pass a token with --token or TRAINSERVE_TOKEN");
                }
                line
            }
            CliError::BadInput(message) | CliError::Unexpected(message) => message.clone(),
            CliError::Unreachable { server, reason } => format!(
                "cannot reach the server at {server}: {reason} (is it running? --server or TRAINSERVE_SERVER says where)"
            ),
        }
    }
}

/// A successful answer: its status and its JSON body (`null` when it had none).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

/// A client of one service.
pub(crate) struct Client {
    http: reqwest::Client,
    /// The base URL without a trailing slash; paths are appended to it.
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the service `connection` names; a URL that is not http(s) is bad input.
    pub(crate) fn new(connection: &Connection) -> Result<Client, CliError> {
        let server = connection.server.trim();
        let url = Url::parse(server).map_err(|err| {
            CliError::BadInput(format!(
                "--server '{server}' is not a URL ({err}); for example http://127.0.0.1:8080"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CliError::BadInput(format!(
                "--server '{server}' is not an http:// or https:// URL"
            )));
        }
        let token = match connection.token.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(token) if token.chars().all(|c| c.is_ascii_graphic()) => Some(token.to_string()),
            Some(_) => {
                return Err(CliError::BadInput(
                    "--token holds spaces or characters outside ASCII; paste the token exactly as `tokens create` printed it"
                        .to_string(),
                ));
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("trainserve-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| CliError::Unexpected(format!("cannot build an HTTP client: {err}")))?;
        Ok(Client {
            http,
            base: server.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// The base URL, as the user gave it.
    pub(crate) fn server(&self) -> &str {
        &self.base
    }

    /// `GET path?query`, answering its JSON.
    pub(crate) async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        let answer = self
            .send(self.request(Method::GET, path).query(query))
            .await?;
        Ok(answer.body)
    }

    /// `POST path` with a JSON body given as bytes (sent as they are: the server judges them).
    pub(crate) async fn post_json(&self, path: &str, body: Vec<u8>) -> Result<Answer, CliError> {
        let request = self
            .request(Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(request).await
    }

    /// `POST path` with no body.
    pub(crate) async fn post_empty(&self, path: &str) -> Result<Answer, CliError> {
        self.send(self.request(Method::POST, path)).await
    }

    /// `POST path` with a multipart form.
    pub(crate) async fn post_form(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> Result<Answer, CliError> {
        self.send(self.request(Method::POST, path).multipart(form))
            .await
    }

    /// `GET path` whose body is read as it arrives (an event stream); an error status is read
    /// whole and returned as an error.
    pub(crate) async fn open_stream(&self, path: &str) -> Result<Response, CliError> {
        let response = self
            .request(Method::GET, path)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|err| self.transport(err))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.read(response).await.err().unwrap_or_else(|| {
                CliError::Unexpected("the event stream answered without events".to_string())
            }))
        }
    }

    /// Turns an error of the connection into the error a user can act on.
    pub(crate) fn transport(&self, err: reqwest::Error) -> CliError {
        if err.is_builder() {
            return CliError::BadInput(format!("cannot build the request: {err}"));
        }
        if err.is_decode() {
            return CliError::Unexpected(format!("cannot read the server's answer: {err}"));
        }
        CliError::Unreachable {
            server: self.base.clone(),
            reason: innermost_cause(&err),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(&self, request: RequestBuilder) -> Result<Answer, CliError> {
        let response = request.send().await.map_err(|err| self.transport(err))?;
        self.read(response).await
    }

    async fn read(&self, response: Response) -> Result<Answer, CliError> {
        let status = response.status();
        let bytes = response.bytes().await.map_err(|err| self.transport(err))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(value) => value,
                Err(_) if !status.is_success() => {
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                }
                Err(err) => {
                    return Err(CliError::Unexpected(format!(
                        "the server at {} answered {} with a body that is not JSON ({err}); is --server a trainserve service?",
                        self.base,
                        status.as_u16()
                    )));
                }
            }
        };
        if status.is_client_error() {
            Err(CliError::Rejected { status, body })
        } else if status.is_server_error() {
            Err(CliError::ServerFailed { status, body })
        } else if !status.is_success() {
            Err(CliError::Unexpected(format!(
                "the server answered {}, which this client does not expect",
                status.as_u16()
            )))
        } else {
            Ok(Answer { status, body })
        }
    }
}

/// Why a request got no answer, in the words of its innermost cause (such as "Connection
/// refused (os error 111)"), without the URL (the message names the server).
fn innermost_cause(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "no answer in time".to_string();
    }
    let mut innermost: &dyn std::error::Error = err;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    innermost.to_string()
}

/// `text` as one URL path segment: everything but letters, digits and `-_~` percent-encoded
/// (dots too, which `..` would otherwise climb with), so that an id typed by hand cannot reach
/// another route.
pub(crate) fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Reads a file named on the command line (`-`: standard input); one that cannot be read is
/// bad input naming it.
pub(crate) fn read_input(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    let read = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map(|_| bytes)
    } else {
        std::fs::read(path)
    };
    read.map_err(|err| CliError::BadInput(format!("cannot read {}: {err}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn an_id_becomes_one_path_segment_whatever_it_holds() {
        assert_eq!(
            segment("0190f5a4-6c1e-7a3b-9d2e-1f0a2b3c4d5e"),
            "0190f5a4-6c1e-7a3b-9d2e-1f0a2b3c4d5e"
        );
        assert_eq!(segment("../healthz?x=1"), "%2E%2E%2Fhealthz%3Fx%3D1");
        assert_eq!(segment("digits@production"), "digits%40production");
    }
}
