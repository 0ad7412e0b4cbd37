//! Connecting to a real nats-server that asks for credentials: user and password, a
//! token, an nkey, a `.creds` file (operator mode), and TLS with client certificates. opsflow must connect, ingest
//! and publish with each, and say so when the credentials are wrong.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use opsflow_e2e::{client, read_all, wait_ready};
use opsflow_nats::NatsConfig;
use opsflow_testkit::{NatsServer, TestServer};

/// A structured CloudEvent for the ingest subject.
fn cloudevent(id: &str) -> (async_nats::HeaderMap, bytes::Bytes) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", "application/cloudevents+json");
    let body = serde_json::json!({
        "specversion": "1.0", "id": id, "source": "/auth-test", "type": "custom.auth",
        "subject": "auth/1", "data": {"n": 1},
    });
    (headers, body.to_string().into())
}

/// Starts opsflow in-process with `nats`, publishes one event with `producer`,
/// waits until it is in the log and comes back on `opsflow.log.>`, and stops opsflow.
async fn ingests_and_publishes(nats: NatsConfig, producer: async_nats::Client) -> anyhow::Result<()> {
    use futures::StreamExt;
    let mut out = producer.subscribe("opsflow.log.>").await?;
    producer.flush().await?;
    let server = TestServer::start_with(|c| c.nats = Some(nats)).await?;
    wait_ready(&server.url()).await?;
    let (headers, body) = cloudevent("e-1");
    jetstream::new(producer)
        .publish_with_headers("ops.events.custom.auth", headers, body)
        .await?
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = client(&server.url()).await?;
    while read_all(&mut log).await?.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "the event was not ingested");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let published = tokio::time::timeout(Duration::from_secs(20), out.next()).await?;
    anyhow::ensure!(published.is_some(), "outbound subscription closed");
    // Stopped, so that a next opsflow on the same server is the consumer's only one.
    server.shutdown().await
}

/// Why opsflow with `nats` does not start (its error, with causes); an error
/// saying `started` when it does.
async fn refused_at_start(nats: NatsConfig, started: &str) -> anyhow::Result<String> {
    match TestServer::start_with(|c| c.nats = Some(nats)).await {
        Ok(_) => anyhow::bail!("{started}"),
        Err(e) => Ok(format!("{e:#}")),
    }
}

/// `/readyz` of an opsflow whose NATS credentials are refused: not ready, NATS
/// disconnected, and never a crash.
async fn refused(nats: NatsConfig) -> anyhow::Result<()> {
    refused_saying(nats).await.map(drop)
}

/// [`refused`], and the last /readyz body, saying why.
async fn refused_saying(nats: NatsConfig) -> anyhow::Result<serde_json::Value> {
    let server = TestServer::start_with(|c| c.nats = Some(nats)).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = reqwest::get(format!("{}/readyz", server.url())).await?;
        let status = r.status();
        let body: serde_json::Value = r.json().await?;
        anyhow::ensure!(status == 503, "ready with refused credentials: {body}");
        if body["nats"]["status"] == "disconnected" && Instant::now() > deadline {
            return Ok(body);
        }
        anyhow::ensure!(Instant::now() < deadline + Duration::from_secs(10), "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password() -> anyhow::Result<()> {
    let nats = NatsServer::start_with_config(r#"authorization { user: "ops", password: "s3cret pass" }"#)?;
    let config = NatsConfig {
        user: Some("ops".into()),
        password: Some("s3cret pass".into()),
        ..NatsConfig::url(nats.url())
    };
    let producer = async_nats::ConnectOptions::with_user_and_password("ops".into(), "s3cret pass".into())
        .connect(nats.url())
        .await?;
    ingests_and_publishes(config.clone(), producer.clone()).await?;
    // In the URL, percent-encoded, as every NATS client takes them (async-nats
    // does not: "authorization violation").
    let in_url = |password: &str| NatsConfig::url(format!("nats://ops:{password}@127.0.0.1:{}", nats.port()));
    ingests_and_publishes(in_url("s3cret%20pass"), producer).await?;
    refused(in_url("wrong")).await?;
    refused(NatsConfig {
        password: Some("wrong".into()),
        ..config
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token() -> anyhow::Result<()> {
    let nats = NatsServer::start_with_config(r#"authorization { token: "t0ken-42" }"#)?;
    let config = NatsConfig {
        token: Some("t0ken-42".into()),
        ..NatsConfig::url(nats.url())
    };
    let producer = async_nats::ConnectOptions::with_token("t0ken-42".into())
        .connect(nats.url())
        .await?;
    ingests_and_publishes(config.clone(), producer.clone()).await?;
    // A user without a password in the URL is a token.
    let in_url = NatsConfig::url(format!("nats://t0ken-42@127.0.0.1:{}", nats.port()));
    ingests_and_publishes(in_url, producer).await?;
    refused(NatsConfig {
        token: Some("other".into()),
        ..config
    })
    .await
}

/// An account without JetStream (accounts configured, JetStream enabled for
/// another): ingest is not ready and says what to do; outbound goes out as core
/// publishes and request/reply answers, neither needing JetStream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_jetstream_is_named_in_readyz() -> anyhow::Result<()> {
    use futures::StreamExt;
    let nats = NatsServer::start_with_config(
        r#"accounts { PLAIN: { users: [{user: "ops", password: "p"}] }, JS: { jetstream: enabled, users: [{user: "js", password: "p"}] } }"#,
    )?;
    let config = NatsConfig::url(format!("nats://ops:p@127.0.0.1:{}", nats.port()));
    let producer = async_nats::ConnectOptions::with_user_and_password("ops".into(), "p".into())
        .connect(nats.url())
        .await?;
    let mut out = producer.subscribe("opsflow.log.>").await?;
    producer.flush().await?;
    let server = TestServer::start_with(|c| c.nats = Some(config)).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let r = reqwest::get(format!("{}/readyz", server.url())).await?;
        let status = r.status();
        let body: serde_json::Value = r.json().await?;
        let ingest = body["nats"]["ingest"].as_str().unwrap_or_default().to_owned();
        if ingest.contains("ingest needs JetStream") && body["nats"]["requests"] == "ready" {
            anyhow::ensure!(status == 503, "ready without JetStream for ingest: {body}");
            break body;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "ingest does not say JetStream is missing: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ingest = body["nats"]["ingest"].as_str().unwrap_or_default();
    assert!(
        ingest.starts_with("not ready, retrying; last failure: ")
            && ingest.contains("JetStream not enabled for account")
            && ingest.contains("start nats-server with -js"),
        "{ingest}"
    );
    // Appended by request/reply, it goes out as a core publish.
    let (headers, body) = cloudevent("e-1");
    let reply = producer
        .request_with_headers("opsflow.api.append", headers, body)
        .await?;
    assert!(
        String::from_utf8_lossy(&reply.payload).contains("\"position\":1"),
        "{reply:?}"
    );
    let published = tokio::time::timeout(Duration::from_secs(20), out.next()).await?;
    anyhow::ensure!(published.is_some(), "outbound subscription closed");
    server.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_seed_file() -> anyhow::Result<()> {
    let (opsflow_key, producer_key) = (nkeys::KeyPair::new_user(), nkeys::KeyPair::new_user());
    let nats = NatsServer::start_with_config(&format!(
        r#"authorization {{ users: [ {{ nkey: "{}" }}, {{ nkey: "{}" }} ] }}"#,
        opsflow_key.public_key(),
        producer_key.public_key()
    ))?;
    let dir = tempfile::tempdir()?;
    let seed_file = dir.path().join("opsflow.nk");
    std::fs::write(&seed_file, format!("{}\n", opsflow_key.seed()?))?;
    let config = NatsConfig {
        nkey_seed_file: Some(seed_file),
        ..NatsConfig::url(nats.url())
    };
    let producer = async_nats::ConnectOptions::with_nkey(producer_key.seed()?)
        .connect(nats.url())
        .await?;
    ingests_and_publishes(config, producer).await?;
    // A file that holds no seed is refused at start, naming the key (the client
    // said "failed signing nonce" on every attempt).
    let garbage = dir.path().join("garbage.nk");
    std::fs::write(&garbage, "not a seed\n")?;
    let error = refused_at_start(
        NatsConfig {
            nkey_seed_file: Some(garbage),
            ..NatsConfig::url(nats.url())
        },
        "started without a seed",
    )
    .await?;
    assert!(
        error.contains("nats.nkey_seed_file") && error.contains("no user nkey seed"),
        "{error}"
    );
    // A key the server does not know.
    let stranger = dir.path().join("stranger.nk");
    std::fs::write(&stranger, nkeys::KeyPair::new_user().seed()?)?;
    refused(NatsConfig {
        nkey_seed_file: Some(stranger),
        ..NatsConfig::url(nats.url())
    })
    .await
}

/// A NATS JWT (header, claims, ed25519 signature by `issuer`, each base64url) with
/// these `nats` claims about `subject`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> anyhow::Result<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("OPSFLOWTEST{}", name.to_uppercase()),
        "iat": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!("{header}.{}", b64.encode(claims.to_string()));
    let signature = issuer.sign(signed.as_bytes())?;
    Ok(format!("{signed}.{}", b64.encode(signature)))
}

/// A `.creds` file's text (a user JWT and the user's seed), as `nsc` writes it.
fn creds(user_jwt: &str, user_seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n"
    )
}

/// An operator-mode server (an operator, one account with JetStream, users with
/// JWTs, as `nsc` sets up): opsflow connects with a `.creds` file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_against_an_operator_mode_server() -> anyhow::Result<()> {
    let operator = nkeys::KeyPair::new_operator();
    let (account, system) = (nkeys::KeyPair::new_account(), nkeys::KeyPair::new_account());
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "ops",
        serde_json::json!({"type": "operator", "version": 2, "system_account": system.public_key()}),
    )?;
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
        "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "app",
        serde_json::json!({"type": "account", "version": 2, "limits": unlimited}),
    )?;
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "sys",
        serde_json::json!({"type": "account", "version": 2, "limits": {"subs": -1, "data": -1, "payload": -1, "conn": -1}}),
    )?;
    let user = |name: &str| -> anyhow::Result<(String, String)> {
        let key = nkeys::KeyPair::new_user();
        let claims = serde_json::json!({"type": "user", "version": 2, "pub": {}, "sub": {},
                                        "subs": -1, "data": -1, "payload": -1});
        Ok((jwt(&account, &key.public_key(), name, claims)?, key.seed()?))
    };
    let nats = NatsServer::start_with_config(&format!(
        "operator: {operator_jwt}\nsystem_account: {}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {}: {account_jwt}\n  {}: {system_jwt}\n}}\n",
        system.public_key(),
        account.public_key(),
        system.public_key(),
    ))?;
    let dir = tempfile::tempdir()?;
    let (opsflow_jwt, opsflow_seed) = user("opsflow")?;
    let creds_file = dir.path().join("opsflow.creds");
    std::fs::write(&creds_file, creds(&opsflow_jwt, &opsflow_seed))?;
    let (producer_jwt, producer_seed) = user("producer")?;
    let producer_creds = dir.path().join("producer.creds");
    std::fs::write(&producer_creds, creds(&producer_jwt, &producer_seed))?;
    let producer = async_nats::ConnectOptions::with_credentials_file(&producer_creds)
        .await?
        .connect(nats.url())
        .await?;
    let config = NatsConfig {
        credentials_file: Some(creds_file),
        ..NatsConfig::url(nats.url())
    };
    ingests_and_publishes(config, producer).await?;
    // A user of an account the server does not know.
    let stranger = dir.path().join("stranger.creds");
    let other_account = nkeys::KeyPair::new_account();
    let key = nkeys::KeyPair::new_user();
    let claims = serde_json::json!({"type": "user", "version": 2, "pub": {}, "sub": {}});
    std::fs::write(
        &stranger,
        creds(
            &jwt(&other_account, &key.public_key(), "stranger", claims)?,
            &key.seed()?,
        ),
    )?;
    refused(NatsConfig {
        credentials_file: Some(stranger),
        ..NatsConfig::url(nats.url())
    })
    .await
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files
/// in `dir`: (ca, server cert, server key, client cert, client key).
fn certificates(dir: &Path) -> anyhow::Result<[std::path::PathBuf; 5]> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "opsflow test CA");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let leaf = |names: Vec<String>, common: &str| -> anyhow::Result<(String, String)> {
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, common);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "nats-server")?;
    let (client_cert, client_key) = leaf(vec!["opsflow".into()], "opsflow")?;
    let files = ["ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"].map(|f| dir.join(f));
    for (path, text) in files
        .iter()
        .zip([ca_cert.pem(), server_cert, server_key, client_cert, client_key])
    {
        std::fs::write(path, text)?;
    }
    Ok(files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let [ca, server_cert, server_key, client_cert, client_key] = certificates(dir.path())?;
    let nats = NatsServer::start_with_config(&format!(
        "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true, timeout: 5 }}",
        server_cert, server_key, ca
    ))?;
    let mut config = NatsConfig::url(nats.url());
    config.tls.required = true;
    config.tls.ca_file = Some(ca.clone());
    config.tls.cert_file = Some(client_cert.clone());
    config.tls.key_file = Some(client_key.clone());
    let producer = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(ca.clone())
        .add_client_certificate(client_cert, client_key)
        .connect(nats.url())
        .await?;
    ingests_and_publishes(config.clone(), producer).await?;
    // A CA file that is not there is refused at start, naming key and file (the
    // client would only say "TLS error" on every attempt).
    let mut missing = config.clone();
    missing.tls.ca_file = Some(dir.path().join("no-such-ca.pem"));
    let error = refused_at_start(missing, "started without its CA file").await?;
    assert!(
        error.contains("nats.tls.ca_file") && error.contains("no-such-ca.pem"),
        "{error}"
    );
    // So is a key that is not the certificate's (the client said "TLS error" on
    // every attempt, and opsflow asked whether nats-server was running).
    let mut mismatched = config.clone();
    mismatched.tls.key_file = Some(server_key.clone());
    let error = refused_at_start(mismatched, "started with another certificate's key").await?;
    assert!(
        error.contains("nats.tls.key_file") && error.contains("is not the private key of"),
        "{error}"
    );
    // Without a client certificate the server refuses the connection, and what
    // to set is said (the client says only "IO error").
    config.tls.cert_file = None;
    config.tls.key_file = None;
    let body = refused_saying(config).await?;
    anyhow::ensure!(
        body.to_string().contains(
            "a server that requires client certificates, TLS verify, also ends the connection so: then set \
                       [nats.tls] cert_file and key_file"
        ),
        "{body}"
    );
    Ok(())
}

/// Three free loopback ports for cluster routes.
fn free_ports() -> anyhow::Result<[u16; 3]> {
    let listeners = [(); 3].map(|()| std::net::TcpListener::bind(("127.0.0.1", 0)));
    let mut ports = [0; 3];
    for (port, listener) in ports.iter_mut().zip(listeners) {
        *port = listener?.local_addr()?.port();
    }
    Ok(ports)
}

/// A three-node JetStream cluster: opsflow's stream is replicated three times
/// (`[nats.ingest] replicas`), and ingest goes on, exactly once, when the node
/// opsflow may be connected to is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_keeps_ingesting_when_a_node_dies() -> anyhow::Result<()> {
    // The route ports are free when picked, but a server another test starts
    // meanwhile may take one (once in a full run): then pick them again.
    let mut nodes = Vec::new();
    for attempt in 1..=5 {
        let routes = free_ports()?;
        let route_list = routes.map(|p| format!("nats-route://127.0.0.1:{p}")).join(", ");
        let started: anyhow::Result<Vec<NatsServer>> = routes
            .iter()
            .enumerate()
            .map(|(i, port)| {
                NatsServer::start_with_config(&format!(
                    "server_name: n{i}\ncluster {{ name: opsflow-test, listen: \"127.0.0.1:{port}\", routes: [{route_list}] }}"
                ))
            })
            .collect();
        match started {
            Ok(started) => {
                nodes = started;
                break;
            }
            Err(e) if attempt < 5 && e.to_string().contains("could not bind") => continue,
            Err(e) => return Err(e),
        }
    }
    let urls: Vec<String> = nodes.iter().map(NatsServer::url).collect();
    // JetStream answers once the cluster has elected its meta leader.
    let others = urls[1..]
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let producer = async_nats::connect(others).await?;
    let js = jetstream::new(producer.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    // (Read raw: the client's account query cannot read nats-server 2.9's answer.)
    let formed = || async {
        let answer = producer.request("$JS.API.INFO", "".into()).await;
        answer.is_ok_and(|m| !String::from_utf8_lossy(&m.payload).contains("\"error\""))
    };
    while !formed().await {
        anyhow::ensure!(Instant::now() < deadline, "the cluster did not form in 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A process of its own, as deployed (its log on this test's stderr).
    let dir = tempfile::tempdir()?;
    let server = opsflow_testkit::OpsflowProcess::start_with_env(
        dir.path(),
        &[],
        &[
            ("OPSFLOW_NATS__URLS", &urls.join(",")),
            ("OPSFLOW_NATS__INGEST__REPLICAS", "3"),
        ],
    )?;
    wait_ready(&server.url()).await?;
    // Both streams opsflow makes survive a node: the dead letters' too (with one
    // replica on the node killed below, ingest would wait for it forever).
    for name in ["OPS_EVENTS", "OPSFLOW_DLQ"] {
        let stream = js.get_stream(name).await?;
        assert_eq!(stream.cached_info().config.num_replicas, 3, "{name}");
    }

    let publish = |from: usize, to: usize| {
        let js = js.clone();
        async move {
            for i in from..to {
                // As a producer does: a publish that fails while the stream elects
                // a new leader is sent again (a copy is absorbed by opsflow).
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let (headers, body) = cloudevent(&format!("c-{i}"));
                    let acked = match js.publish_with_headers("ops.events.custom.auth", headers, body).await {
                        Ok(ack) => ack.await.map(|_| ()).map_err(anyhow::Error::from),
                        Err(e) => Err(e.into()),
                    };
                    match acked {
                        Ok(()) => break,
                        Err(e) if Instant::now() < deadline => {
                            eprintln!("publish of c-{i} failed ({e}); again");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            anyhow::Ok(())
        }
    };
    let count = |url: String| async move {
        let mut log = client(&url).await?;
        anyhow::Ok(read_all(&mut log).await?)
    };
    publish(0, 100).await?;
    // The node opsflow's connection is on (the client picks one at random) dies
    // while a producer publishes and opsflow ingests.
    let mut on = None;
    for (i, node) in nodes.iter().enumerate() {
        let connz: serde_json::Value = reqwest::get(format!("{}/connz", node.monitor_url()))
            .await?
            .json()
            .await?;
        let names = connz["connections"].as_array().cloned().unwrap_or_default();
        if names.iter().any(|c| c["name"] == "opsflow") {
            on = Some(i);
        }
    }
    let on = on.ok_or_else(|| anyhow::anyhow!("no node has opsflow's connection"))?;
    let publisher = tokio::spawn(publish(100, 400));
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(server.url()).await?.len() < 120 {
        anyhow::ensure!(Instant::now() < deadline, "opsflow is not ingesting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::ensure!(
        !publisher.is_finished(),
        "the producer finished before the node died: the failover would prove nothing"
    );
    nodes[on].kill();
    publisher.await??;
    let deadline = Instant::now() + Duration::from_secs(60);
    let events = loop {
        let events = count(server.url()).await?;
        if events.len() >= 400 || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((events.len(), ids.len()), (400, 400), "each event once");
    Ok(())
}
