//! One node per subject: each opsflow node keeps a log of its own (scale-out,
//! DESIGN §9, is not built yet), so two nodes ingesting through one consumer,
//! answering one request subject or publishing outbound to one subject space would
//! split the events between their logs, or mix their positions on NATS. Before
//! ingest, request/reply and outbound start, each claims what it uses on
//! `_OPSFLOW.CLAIMS.<role>`: it subscribes there to answer later claims with its
//! own, asks who already holds one, and does not start when another node's claim
//! conflicts with it (a core NATS check against misconfiguration, not a lease: two
//! nodes claiming in the same instant can each see the other, and then neither
//! starts, which `/readyz` shows).

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Where claims are asked for and answered: `<CLAIMS>.<role>`.
const CLAIMS: &str = "_OPSFLOW.CLAIMS";

/// How long answers to a claim are waited for once the server has taken it.
const ANSWERS_WITHIN: Duration = Duration::from_millis(250);

/// How long asking may wait for NATS before it is tried again.
const ASK_WITHIN: Duration = Duration::from_secs(5);

/// The part of opsflow that claims something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Ingest claims its consumer (`<stream>/<consumer>`).
    Ingest,
    /// Request/reply claims its subject.
    Requests,
    /// Outbound claims its subjects (`<prefix>.>`).
    Outbound,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Requests => "requests",
            Role::Outbound => "outbound",
        }
    }

    /// Whether two nodes claiming `a` and `b` would get in each other's way.
    fn conflicts(self, a: &str, b: &str) -> bool {
        match self {
            Role::Ingest => a == b,
            Role::Requests | Role::Outbound => crate::subjects::overlap(a, b),
        }
    }
}

/// A node's claim, as it asks and answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claim {
    /// Unique to this claim (an inbox of its client): its own answer is told apart by it.
    id: String,
    /// What is claimed: a consumer `<stream>/<consumer>`, or subjects.
    claims: String,
    /// The node, for the operator: its host and process.
    host: String,
    pid: u32,
    /// When the claim was made (RFC 3339).
    since: String,
}

impl Claim {
    /// Why this node does not start `role`, whose claim conflicts with `theirs`,
    /// and what to change.
    fn refused(&self, role: Role, theirs: &Claim) -> String {
        let (doing, why, remedy) = match role {
            Role::Ingest => (
                "ingests with consumer",
                "nodes sharing a consumer would split the events between their logs",
                "give this node its own [nats.ingest] consumer (it then records every event as well), or turn \
                 ingest off here ([nats.ingest] enabled = false)",
            ),
            Role::Requests => (
                "answers append requests on",
                "each request would be recorded in one node's log or the other's",
                "give this node its own [nats.request_reply] subject, or turn request/reply off here \
                 ([nats.request_reply] enabled = false)",
            ),
            Role::Outbound => (
                "publishes committed events to",
                "two nodes publishing there would mix their positions",
                "give this node its own [nats.outbound] subject_prefix, or turn outbound off here \
                 ([nats.outbound] enabled = false)",
            ),
        };
        let overlapping = if theirs.claims == self.claims {
            String::new()
        } else {
            format!(", which overlaps this node's {}", self.claims)
        };
        format!(
            "another opsflow node (host {}, pid {}, since {}) already {doing} {}{overlapping}: each node keeps a \
             log of its own, so {why}; {remedy}, and restart this node",
            theirs.host, theirs.pid, theirs.since, theirs.claims
        )
    }
}

/// A claim held: answered until released (or dropped).
pub(crate) struct Held {
    stop: CancellationToken,
    answering: Option<tokio::task::JoinHandle<()>>,
}

impl Held {
    /// Stops answering claims, and waits (briefly) for the server to take that.
    pub(crate) async fn release(mut self) {
        self.stop.cancel();
        if let Some(answering) = self.answering.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), answering).await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Runs `role`'s part (`run`) while its claim of `claims` is held ([`hold`]); `Ok` at
/// once at shutdown, and, when another node holds a conflicting claim, at
/// shutdown without running it.
pub(crate) async fn while_held(
    client: &async_nats::Client,
    role: Role,
    claims: &str,
    shutdown: &CancellationToken,
    ready: &crate::Flag,
    run: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let Some(held) = hold(client, role, claims, shutdown, ready).await else {
        return Ok(());
    };
    let outcome = run.await;
    held.release().await;
    outcome
}

/// Claims `claims` for `role` on `client`'s NATS, retrying while NATS does not
/// answer. `Some` once held; `None` at shutdown, or when another node holds a
/// conflicting claim: then `ready` says which node and what to change, and
/// this waits for shutdown, since starting once that node is gone
/// would still mix two logs.
async fn hold(
    client: &async_nats::Client,
    role: Role,
    claims: &str,
    shutdown: &CancellationToken,
    ready: &crate::Flag,
) -> Option<Held> {
    if ready.refused() {
        // Refused before, and started again on a new connection (after a client
        // that stopped): still refused, whether or not the other node is there now.
        shutdown.cancelled().await;
        return None;
    }
    let mine = Claim {
        id: client.new_inbox(),
        claims: claims.to_owned(),
        host: host(),
        pid: std::process::id(),
        since: jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    loop {
        if !crate::is_connected(client) {
            shutdown
                .run_until_cancelled(tokio::time::sleep(Duration::from_millis(200)))
                .await?;
            continue;
        }
        let outcome = shutdown.run_until_cancelled(claim(client, role, &mine)).await?;
        match outcome {
            Ok(Ok(held)) => return Some(held),
            Ok(Err(theirs)) => {
                let problem = mine.refused(role, &theirs);
                tracing::error!(role = role.as_str(), claims, "{problem}");
                ready.refuse(problem);
                shutdown.cancelled().await;
                return None;
            }
            Err(e) => {
                // The connection monitor reports NATS being down already.
                tracing::debug!(role = role.as_str(), error = %e, "cannot claim on NATS yet; retrying");
                ready.fail(format!("cannot check on NATS for another node doing the same yet: {e}"));
                shutdown
                    .run_until_cancelled(tokio::time::sleep(Duration::from_secs(1)))
                    .await?;
            }
        }
    }
}

/// One attempt: answers later claims first, then asks; `Ok(Err(theirs))` when
/// another node holds a conflicting claim.
async fn claim(client: &async_nats::Client, role: Role, mine: &Claim) -> anyhow::Result<Result<Held, Claim>> {
    let subject = format!("{CLAIMS}.{}", role.as_str());
    let asked = client.subscribe(subject.clone()).await?;
    let mut answers = client.subscribe(mine.id.clone()).await?;
    let body: bytes::Bytes = serde_json::to_vec(mine)?.into();
    tokio::time::timeout(ASK_WITHIN, client.flush()).await??;
    // The subscriptions are on the server now: a node claiming later hears of this
    // one.
    let stop = CancellationToken::new();
    let answering = tokio::spawn(answer(client.clone(), asked, body.clone(), stop.clone()));
    let held = Held {
        stop,
        answering: Some(answering),
    };
    client
        .publish_with_reply(subject.clone(), mine.id.clone(), body)
        .await?;
    tokio::time::timeout(ASK_WITHIN, client.flush()).await??;
    let deadline = tokio::time::Instant::now() + ANSWERS_WITHIN;
    let mut heard_itself = false;
    while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await {
        // Anything else that answers there (a stream capturing the subject) is no claim.
        let Ok(theirs) = serde_json::from_slice::<Claim>(&answer.payload) else {
            continue;
        };
        if theirs.id == mine.id {
            heard_itself = true;
        } else if role.conflicts(&theirs.claims, &mine.claims) {
            held.release().await;
            return Ok(Err(theirs));
        }
    }
    if !heard_itself {
        // Its own claim always answers: without it, most likely the NATS user may
        // not publish or subscribe there, and no node hears of any other.
        tracing::warn!(
            role = role.as_str(),
            subject,
            "this node did not hear its own claim within {ANSWERS_WITHIN:?}, so it cannot tell whether another \
             node already does the same (does the NATS user have publish and subscribe permission on \
             {CLAIMS}.>?): starting all the same"
        );
    }
    Ok(Ok(held))
}

/// Answers each claim asked on `asked` with this node's (`claim`) until `stop`.
async fn answer(
    client: async_nats::Client,
    mut asked: async_nats::Subscriber,
    claim: bytes::Bytes,
    stop: CancellationToken,
) {
    while let Some(Some(question)) = stop.run_until_cancelled(asked.next()).await {
        if let Some(reply) = question.reply
            && let Err(e) = client.publish(reply, claim.clone()).await
        {
            tracing::debug!(error = %e, "cannot answer a claim");
        }
    }
    // Not with NATS unreachable: shutdown does not wait for it.
    if asked.unsubscribe().await.is_ok() && crate::is_connected(&client) {
        let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
    }
}

/// This machine's name, for other nodes' operators.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(claims: &str) -> Claim {
        Claim {
            id: "_INBOX.a".into(),
            claims: claims.into(),
            host: "h1".into(),
            pid: 7,
            since: "2026-11-24T14:00:00Z".into(),
        }
    }

    #[test]
    fn a_refusal_names_the_other_node_what_it_holds_and_the_remedy() {
        let (mine, theirs) = (claim("opsflow.log.b.>"), claim("opsflow.log.>"));
        assert_eq!(
            mine.refused(Role::Outbound, &theirs),
            "another opsflow node (host h1, pid 7, since 2026-11-24T14:00:00Z) already publishes committed events \
             to opsflow.log.>, which overlaps this node's opsflow.log.b.>: each node keeps a log of its own, so two \
             nodes publishing there would mix their positions; give this node its own [nats.outbound] \
             subject_prefix, or turn outbound off here ([nats.outbound] enabled = false), and restart this node"
        );
        let same = claim("OPS_EVENTS/opsflow-ingest");
        assert!(
            same.refused(Role::Ingest, &same)
                .contains("already ingests with consumer OPS_EVENTS/opsflow-ingest: each node")
        );
    }

    #[test]
    fn claims_conflict_by_part() {
        assert!(Role::Ingest.conflicts("OPS_EVENTS/opsflow-ingest", "OPS_EVENTS/opsflow-ingest"));
        assert!(!Role::Ingest.conflicts("OPS_EVENTS/node-a", "OPS_EVENTS/node-b"));
        assert!(Role::Requests.conflicts("opsflow.api.append", "opsflow.api.append"));
        assert!(!Role::Requests.conflicts("opsflow.api.append", "node2.api.append"));
        assert!(Role::Outbound.conflicts("opsflow.log.>", "opsflow.log.>"));
        // A prefix within another's subjects mixes on a subscriber of the wider.
        assert!(Role::Outbound.conflicts("opsflow.log.>", "opsflow.log.b.>"));
        assert!(!Role::Outbound.conflicts("opsflow.log.>", "node2.log.>"));
    }
}
