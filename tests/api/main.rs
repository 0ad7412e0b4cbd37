//! The gRPC and HTTP APIs of one in-process server, through real clients.

use opsflow_e2e::{client, event, exact, no_stream, read_all};
use opsflow_proto::v1::{self, subscribe_response::Message};
use opsflow_testkit::{TestServer, order_json};
use serde_json::{Value, json};
use tonic::Code;

mod appends;
mod errors;
mod serving;

async fn post(url: &str, content_type: &str, body: String) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/events"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

async fn get(url: &str) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::get(url).await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}
