//! Server-sent events read off a response body as it arrives: `GET /v1/jobs/{id}/events`
//! sends a `job` event, then `progress`, `epoch` and `status` events until the job ends.

use serde_json::Value;

use super::client::{CliError, Client};

/// One event of the stream: its name and its `data`, parsed as JSON.
#[derive(Debug, PartialEq)]
pub(crate) struct ServerEvent {
    pub(crate) name: String,
    pub(crate) data: Value,
}

/// The events of one open stream.
pub(crate) struct EventStream<'a> {
    client: &'a Client,
    response: reqwest::Response,
    parser: Parser,
    ready: std::collections::VecDeque<ServerEvent>,
}

impl<'a> EventStream<'a> {
    /// Opens the stream at `path`; a 4xx (an unknown job) is an error before any event.
    pub(crate) async fn open(client: &'a Client, path: &str) -> Result<Self, CliError> {
        let response = client.open_stream(path).await?;
        Ok(EventStream {
            client,
            response,
            parser: Parser::default(),
            ready: Default::default(),
        })
    }

    /// The next event, or `None` once the server has closed the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<ServerEvent>, CliError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            let chunk = self
                .response
                .chunk()
                .await
                .map_err(|err| self.client.transport(err))?;
            let Some(chunk) = chunk else {
                return Ok(None);
            };
            for (name, data) in self.parser.feed(&chunk) {
                let data = serde_json::from_str(&data).map_err(|err| {
                    CliError::Unexpected(format!(
                        "the server sent a '{name}' event whose data is not JSON ({err}): {data}"
                    ))
                })?;
                self.ready.push_back(ServerEvent { name, data });
            }
        }
    }
}

/// The text/event-stream format, fed in chunks that may split lines anywhere.
#[derive(Default)]
struct Parser {
    /// Bytes of a line not yet ended.
    partial: Vec<u8>,
    /// The event being gathered: its name and data lines.
    name: Option<String>,
    data: Vec<String>,
}

impl Parser {
    /// Feeds bytes; answers the events they complete, as (name, data).
    fn feed(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        let mut events = Vec::new();
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.partial.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                let name = self.name.take();
                if !self.data.is_empty() {
                    let name = name.unwrap_or_else(|| "message".to_string());
                    events.push((name, self.data.join("\n")));
                    self.data.clear();
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.name = Some(value.to_string()),
                "data" => self.data.push(value.to_string()),
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::Parser;

    #[test]
    fn events_split_across_chunks_arrive_whole_and_in_order() {
        let mut parser = Parser::default();
        let stream =
            "event: job\ndata: {\"id\":1}\n\n:keep-alive\n\nevent: epoch\r\ndata: {\"epoch\"";
        let first = parser.feed(stream.as_bytes());
        assert_eq!(first, vec![("job".to_string(), "{\"id\":1}".to_string())]);
        let second = parser.feed(b":3}\r\n\r\ndata: a\ndata: b\n\n");
        assert_eq!(
            second,
            vec![
                ("epoch".to_string(), "{\"epoch\":3}".to_string()),
                ("message".to_string(), "a\nb".to_string()),
            ]
        );
    }

    #[test]
    fn a_comment_or_a_name_without_data_is_no_event() {
        let mut parser = Parser::default();
        assert!(parser.feed(b": ping\n\nevent: lonely\n\n").is_empty());
        assert_eq!(
            parser.feed(b"data:x\n\n"),
            vec![("message".to_string(), "x".to_string())]
        );
    }
}
