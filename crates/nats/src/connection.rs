//! Connecting to NATS: credentials, TLS, reconnects with backoff, and state.

use std::time::Duration;

use async_nats::{Client, ConnectOptions};

use crate::{Flag, NatsConfig, NatsError};

/// Connects with retries in the background: the client is returned at once and
/// reconnects forever with capped exponential backoff. `state` follows the
/// connection: ready while connected, else why not (the last failed attempt, named
/// with the URLs it tried).
pub async fn connect(config: &NatsConfig, state: &Flag) -> Result<Client, NatsError> {
    state.fail(format!("connecting to {}", config.display_urls()));
    // On /metrics from the start, at 0, so that the first one shows in `increase()`.
    metrics::counter!("opsflow_nats_disconnections_total", "connection" => config.name.clone()).increment(0);
    let mut options = ConnectOptions::new()
        .name(&config.name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .ping_interval(Duration::from_secs(config.ping_interval_secs))
        .reconnect_delay_callback(reconnect_delay)
        .event_callback({
            // Which connection (opsflow has one for request/reply of its own), and
            // where it goes: the client's errors name neither.
            let connection = config.name.clone();
            let urls = config.display_urls();
            // TLS without a client certificate: an IO error may be a server that
            // requires one (a plain URL to a plain server gets no such hint).
            let without_certificate = config.tls.cert_file.is_none()
                && (config.tls.required
                    || config.tls.ca_file.is_some()
                    || config
                        .urls
                        .iter()
                        .any(|u| u.trim().to_ascii_lowercase().starts_with("tls://")));
            let state = state.clone();
            move |event| {
                let (connection, urls, state) = (connection.clone(), urls.clone(), state.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            state.set(true);
                            tracing::info!(%connection, "nats connected");
                        }
                        async_nats::Event::Disconnected => {
                            metrics::counter!("opsflow_nats_disconnections_total", "connection" => connection.clone())
                                .increment(1);
                            state.fail(format!("disconnected from {urls}; reconnecting"));
                            tracing::warn!(%connection, %urls, "nats disconnected; reconnecting");
                        }
                        async_nats::Event::ClientError(error) => {
                            let problem = connect_problem(&urls, &error.to_string(), without_certificate);
                            tracing::warn!(%connection, "{problem}");
                            state.fail(problem);
                        }
                        // A refused connect comes as a client error; these come on a
                        // connection (a permission violation): logged, not a state.
                        async_nats::Event::ServerError(error) => {
                            tracing::warn!(%connection, %urls, %error, "nats server error");
                        }
                        other => tracing::info!(%connection, event = %other, "nats event"),
                    }
                }
            }
        });
    if let Some(path) = &config.credentials_file {
        options = options.credentials_file(path).await.map_err(|e| NatsError::Config {
            key: "nats.credentials_file".into(),
            message: e.to_string(),
        })?;
    }
    if let Some(path) = &config.nkey_seed_file {
        let seed = std::fs::read_to_string(path).map_err(|e| NatsError::Config {
            key: "nats.nkey_seed_file".into(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        // Read at each connect, where a bad one says only "failed signing nonce".
        if let Err(e) = nkeys::KeyPair::from_seed(seed.trim()) {
            return Err(NatsError::Config {
                key: "nats.nkey_seed_file".into(),
                message: format!(
                    "{} holds no user nkey seed (a line of 58 characters starting `SU`, as `nk -gen user` \
                     writes): {e}",
                    path.display()
                ),
            });
        }
        options = options.nkey(seed.trim().to_owned());
    }
    let addrs = parse_urls(config)?;
    match url_credentials(config, &addrs)? {
        Some(UrlCredentials::UserPassword(user, password)) => options = options.user_and_password(user, password),
        Some(UrlCredentials::Token(token)) => options = options.token(token),
        None => {}
    }
    // The client is given them as options: the addresses it logs (at debug level)
    // carry none.
    let addrs = addrs
        .iter()
        .map(|a| crate::config::without_credentials(a.as_url_str()).parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NatsError::Config {
            key: "nats.urls".into(),
            message: e.to_string(),
        })?;
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if config.tls.required {
        options = options.require_tls(true);
    }
    check_tls_files(&config.tls)?;
    if let Some(ca) = &config.tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(cert), Some(key)) => options = options.add_client_certificate(cert.clone(), key.clone()),
        (None, None) => {}
        _ => {
            return Err(NatsError::Config {
                key: "nats.tls.cert_file".into(),
                message: "cert_file and key_file go together".into(),
            });
        }
    }
    let client = async_nats::connect_with_options(addrs, options)
        .await
        .map_err(|e| NatsError::Connect(e.to_string()))?;
    Ok(client)
}

/// The JetStream API's answers that mean no JetStream: not enabled on the server,
/// or not for the account.
pub(crate) const JETSTREAM_NOT_ENABLED: [async_nats::jetstream::ErrorCode; 2] = [
    async_nats::jetstream::ErrorCode::JETSTREAM_NOT_ENABLED,
    async_nats::jetstream::ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT,
];

/// How credentials go into a URL, for errors about them.
const PERCENT_ENCODED: &str =
    "credentials in a URL are percent-encoded: %40 for @, %2F for /, %2C for a comma, %3A for a colon";

/// Credentials written into a server URL, as NATS clients take them.
#[derive(Debug, PartialEq)]
enum UrlCredentials {
    /// `nats://user:password@host`.
    UserPassword(String, String),
    /// `nats://token@host`: a user without a password is a token.
    Token(String),
}

/// The server URLs as addresses; an error names `nats.urls` and the URL (or, with
/// credentials anywhere in the list, its place only).
fn parse_urls(config: &NatsConfig) -> Result<Vec<async_nats::ServerAddr>, NatsError> {
    // With credentials anywhere in the list, a URL that does not parse is not
    // shown: it may be part of a password with a comma in it, split off.
    let credentials = config.urls.iter().any(|u| u.contains('@'));
    config
        .urls
        .iter()
        .enumerate()
        .map(|(i, u)| {
            u.parse::<async_nats::ServerAddr>().map_err(|e| NatsError::Config {
                key: "nats.urls".into(),
                message: if credentials {
                    format!(
                        "server URL {} of {} is invalid: {e} ({PERCENT_ENCODED})",
                        i + 1,
                        config.urls.len()
                    )
                } else {
                    format!("{u:?}: {e}")
                },
            })
        })
        .collect()
}

/// Checks the server URLs as connecting reads them (each parses; credentials in
/// them are usable and not given twice), so that a config is refused at start,
/// before anything is opened.
pub(crate) fn check_urls(config: &NatsConfig) -> Result<(), NatsError> {
    let addrs = parse_urls(config)?;
    url_credentials(config, &addrs).map(|_| ())
}

/// The credentials the server URLs carry (percent-decoded), which async-nats does
/// not read from them (it refused such a server with "authorization violation").
/// The client has one set for every server, so the URLs that carry credentials
/// must carry the same, and `config` no others. `addrs` are `config`'s URLs
/// parsed. Errors never show them.
fn url_credentials(config: &NatsConfig, addrs: &[async_nats::ServerAddr]) -> Result<Option<UrlCredentials>, NatsError> {
    let refused = |message: &str| NatsError::Config {
        key: "nats.urls".into(),
        message: message.into(),
    };
    let decoded = |text: &str, part: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|t| t.into_owned())
            .map_err(|_| refused(&format!("the {part} in a server URL is not UTF-8 once percent-decoded")))
    };
    let mut found: Option<UrlCredentials> = None;
    for (url, addr) in config.urls.iter().zip(addrs) {
        // `user:@host` is a user with an empty password (as the Go client reads
        // it), `user@host` a token: the URL as written tells them apart by the
        // colon only.
        let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        let authority = rest.find('/').map_or(rest, |end| &rest[..end]);
        let with_colon = authority.rsplit_once('@').is_some_and(|(info, _)| info.contains(':'));
        let these = match (addr.username(), addr.password()) {
            (None, None) => continue,
            (None, Some(_)) => return Err(refused("a server URL has a password without a user")),
            (Some(user), password) if with_colon => UrlCredentials::UserPassword(
                decoded(user, "user")?,
                decoded(password.unwrap_or_default(), "password")?,
            ),
            (Some(token), _) => UrlCredentials::Token(decoded(token, "token")?),
        };
        if found.as_ref().is_some_and(|other| *other != these) {
            return Err(refused(&format!(
                "the server URLs carry different credentials; the client has one set for every server: give them \
                 once, in the URLs or in [nats] ({PERCENT_ENCODED})"
            )));
        }
        found = Some(these);
    }
    let elsewhere = [
        ("user", config.user.is_some()),
        ("token", config.token.is_some()),
        ("credentials_file", config.credentials_file.is_some()),
        ("nkey_seed_file", config.nkey_seed_file.is_some()),
    ];
    if found.is_some()
        && let Some((key, _)) = elsewhere.iter().find(|(_, set)| *set)
    {
        return Err(refused(&format!(
            "credentials both in a server URL and in [nats] {key}: give them in one place"
        )));
    }
    Ok(found)
}

/// What a failed connection attempt to `urls` says, with what to check: the
/// credentials when the server refused them, else whether it runs and is
/// reachable.
fn connect_problem(urls: &str, error: &str, without_certificate: bool) -> String {
    let lower = error.to_ascii_lowercase();
    let check = if lower.contains("authorization violation") || lower.contains("authentication") {
        "the server refused the credentials: check [nats] user and password, token, nkey_seed_file or \
         credentials_file, or those in the URL"
    } else if lower.contains("tls") {
        "the TLS handshake failed: check that [nats.tls] ca_file signed the server's certificate (and that the \
         URL's host name is one it names), and, where the server asks for a client certificate, cert_file and \
         key_file"
    } else if without_certificate && lower.contains("io error") {
        // A server requiring client certificates (TLS `verify`) ends the
        // connection of a client without one after the handshake: an IO error.
        "is nats-server running there, and reachable? (a server that requires client certificates, TLS verify, \
         also ends the connection so: then set [nats.tls] cert_file and key_file)"
    } else {
        "is nats-server running there, and reachable?"
    };
    format!("cannot connect to {urls} ({error}): {check}; retrying")
}

/// Refuses TLS files that cannot be read or hold no PEM of the kind expected,
/// naming the key and the file: the client reads them only when it connects, and
/// then reports a bare "TLS error" on every attempt, for ever.
fn check_tls_files(tls: &crate::config::TlsConfig) -> Result<(), NatsError> {
    for (key, path, holds, marker) in [
        ("ca_file", &tls.ca_file, "certificate", "CERTIFICATE-----"),
        ("cert_file", &tls.cert_file, "certificate", "CERTIFICATE-----"),
        ("key_file", &tls.key_file, "private key", "PRIVATE KEY-----"),
    ] {
        let Some(path) = path else { continue };
        let problem = match std::fs::read(path) {
            Err(e) => format!("cannot read {}: {e}", path.display()),
            Ok(pem) if !String::from_utf8_lossy(&pem).contains(marker) => {
                format!("{} holds no PEM {holds} (-----BEGIN ...{marker})", path.display())
            }
            Ok(_) => continue,
        };
        return Err(NatsError::Config {
            key: format!("nats.tls.{key}"),
            message: problem,
        });
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        client_identity(cert, key)?;
    }
    Ok(())
}

/// Refuses a client certificate and key the TLS library would refuse at each
/// connect: a certificate it cannot use (X.509 v1, as `openssl x509 -req` makes
/// without extensions), a key it cannot read, or a key not the certificate's (a
/// message signed with the key does not verify with the certificate).
fn client_identity(cert: &std::path::Path, key: &std::path::Path) -> Result<(), NatsError> {
    use rustls::SignatureScheme as Scheme;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let refused = |key: &str, message: String| NatsError::Config {
        key: format!("nats.tls.{key}"),
        message,
    };
    let first = CertificateDer::pem_file_iter(cert)
        .and_then(|mut certs| certs.next().transpose())
        .map_err(|e| refused("cert_file", format!("{}: {e}", cert.display())))?
        .ok_or_else(|| refused("cert_file", format!("{} holds no certificate", cert.display())))?;
    let parsed = webpki::EndEntityCert::try_from(&first).map_err(|e| {
        refused(
            "cert_file",
            format!(
                "{}: the client cannot use it ({e:?}): it takes an X.509 v3 certificate (openssl makes one with \
                 extensions, e.g. -extfile holding extendedKeyUsage = clientAuth)",
                cert.display()
            ),
        )
    })?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        refused(
            "key_file",
            format!(
                "{}: {e} (the client reads an unencrypted PEM private key: PKCS#8, PKCS#1 or SEC1)",
                key.display()
            ),
        )
    })?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| refused("key_file", format!("{}: {e}", key.display())))?;
    let schemes = [
        (Scheme::ED25519, webpki::ring::ED25519),
        (Scheme::ECDSA_NISTP256_SHA256, webpki::ring::ECDSA_P256_SHA256),
        (Scheme::ECDSA_NISTP384_SHA384, webpki::ring::ECDSA_P384_SHA384),
        (Scheme::RSA_PKCS1_SHA256, webpki::ring::RSA_PKCS1_2048_8192_SHA256),
    ];
    let offered: Vec<Scheme> = schemes.iter().map(|(scheme, _)| *scheme).collect();
    let Some(signer) = signing.choose_scheme(&offered) else {
        // A kind of key this check does not know: the handshake will tell.
        return Ok(());
    };
    let message = b"opsflow: does this key belong to this certificate?";
    let signature = signer
        .sign(message)
        .map_err(|e| refused("key_file", format!("{}: {e}", key.display())))?;
    let verifies = schemes
        .iter()
        .find(|(scheme, _)| *scheme == signer.scheme())
        .is_some_and(|(_, alg)| parsed.verify_signature(*alg, message, &signature).is_ok());
    if !verifies {
        return Err(refused(
            "key_file",
            format!(
                "{} is not the private key of {} (the client takes a certificate and its own private key)",
                key.display(),
                cert.display()
            ),
        ));
    }
    Ok(())
}

/// Whether the client is connected now (for `/readyz` and metrics).
pub fn is_connected(client: &Client) -> bool {
    matches!(client.connection_state(), async_nats::connection::State::Connected)
}

/// How many times the client has connected: a change means a new connection, and
/// whatever the old one had not sent or received is gone.
pub fn connects(client: &Client) -> u64 {
    client.statistics().connects.load(std::sync::atomic::Ordering::Relaxed)
}

/// Why `client` no longer works, if its connection task is gone (a flush cannot
/// even be handed to it); `None` while it works, or only waits for the server.
pub async fn client_stopped(client: &Client) -> Option<String> {
    use async_nats::client::FlushErrorKind;
    match tokio::time::timeout(Duration::from_secs(2), client.flush()).await {
        Ok(Err(e)) if e.kind() == FlushErrorKind::SendError => Some(e.to_string()),
        _ => None,
    }
}

/// The wait before reconnect attempt `attempts`: 0.1 s doubling to at most 2 s (as
/// the Go client waits), so NATS back after an outage is used again within about
/// 2 s, plus up to 100 ms at random (the Go client's jitter): opsflow nodes that
/// lost the same server do not all come back in the same instant.
fn reconnect_delay(attempts: usize) -> Duration {
    let exp = u32::try_from(attempts.min(8)).unwrap_or(8);
    let backoff = Duration::from_millis(100 * 2u64.pow(exp)).min(Duration::from_secs(2));
    backoff + Duration::from_millis(rand::random_range(0..=100))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An X.509 v1 client certificate (as `openssl x509 -req` makes without
    /// extensions; a test file, with its key) is refused at start, naming the
    /// key: the TLS library refuses it at each connect with a bare "TLS error".
    #[test]
    fn an_x509_v1_client_certificate_is_refused() {
        let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let said = match client_identity(&testdata.join("client-v1.pem"), &testdata.join("client-v1.key")) {
            Err(NatsError::Config { key, message }) => format!("{key}: {message}"),
            other => panic!("not refused: {other:?}"),
        };
        assert!(
            said.starts_with("nats.tls.cert_file: ") && said.contains("UnsupportedCertVersion"),
            "{said}"
        );
    }

    #[test]
    fn a_failed_tls_handshake_points_at_the_tls_settings() {
        let said = connect_problem("tls://127.0.0.1:4222", "nats: TLS error", false);
        assert!(
            said.contains("the TLS handshake failed: check that [nats.tls] ca_file"),
            "{said}"
        );
        let said = connect_problem("nats://127.0.0.1:4222", "nats: IO error", false);
        assert!(
            said.ends_with("is nats-server running there, and reachable?; retrying"),
            "{said}"
        );
        // Without a client certificate, an IO error may be a server requiring one.
        let said = connect_problem("tls://127.0.0.1:4222", "nats: IO error", true);
        assert!(
            said.contains(
                "a server that requires client certificates, TLS verify, also ends the connection so: \
                 then set [nats.tls] cert_file and key_file"
            ),
            "{said}"
        );
    }

    #[test]
    fn tls_files_that_cannot_be_used_are_refused_naming_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, key, text) = (
            dir.path().join("ca.pem"),
            dir.path().join("key.pem"),
            dir.path().join("x.txt"),
        );
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        std::fs::write(
            &key,
            "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::write(&text, "not pem").unwrap();
        let tls = |ca_file: &std::path::Path, key_file: &std::path::Path| crate::config::TlsConfig {
            ca_file: Some(ca_file.into()),
            cert_file: Some(ca.clone()),
            key_file: Some(key_file.into()),
            ..Default::default()
        };
        let refused = |t| match check_tls_files(&t) {
            Err(NatsError::Config { key, message }) => format!("{key}: {message}"),
            other => panic!("not refused: {other:?}"),
        };
        // PEM of each kind: a CA alone passes; these are no certificate and key the
        // client could use (the end-to-end TLS test has real ones).
        let ca_only = crate::config::TlsConfig {
            ca_file: Some(ca.clone()),
            ..Default::default()
        };
        assert!(check_tls_files(&ca_only).is_ok());
        let e = refused(tls(&ca, &key));
        assert!(e.starts_with("nats.tls."), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = refused(tls(&missing, &key));
        assert!(
            e.starts_with("nats.tls.ca_file: cannot read ") && e.contains("missing.pem"),
            "{e}"
        );
        let e = refused(tls(&text, &key));
        assert!(
            e.starts_with("nats.tls.ca_file: ") && e.contains("x.txt holds no PEM certificate"),
            "{e}"
        );
        let e = refused(tls(&ca, &ca));
        assert!(
            e.starts_with("nats.tls.key_file: ") && e.contains("holds no PEM private key"),
            "{e}"
        );
    }

    #[test]
    fn credentials_are_read_from_the_server_urls() {
        let with = |config: &NatsConfig, urls: &[&str]| {
            let config = NatsConfig {
                urls: urls.iter().map(|u| u.to_string()).collect(),
                ..config.clone()
            };
            let addrs: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().unwrap()).collect();
            url_credentials(&config, &addrs).map_err(|e| e.to_string())
        };
        let plain = NatsConfig::url("nats://127.0.0.1:4222");
        let of = |urls: &[&str]| with(&plain, urls);
        assert_eq!(of(&["nats://127.0.0.1:4222"]), Ok(None));
        assert_eq!(
            of(&["nats://u:p%40ss@n1:4222", "nats://n2:4222", "nats://u:p%40ss@n3:4222"]),
            Ok(Some(UrlCredentials::UserPassword("u".into(), "p@ss".into())))
        );
        assert_eq!(
            of(&["tls://s3cr%2Ft@n1:4222"]),
            Ok(Some(UrlCredentials::Token("s3cr/t".into())))
        );
        // An empty password is a password, not a token.
        assert_eq!(
            of(&["nats://u:@n1:4222"]),
            Ok(Some(UrlCredentials::UserPassword("u".into(), String::new())))
        );
        let refused = |result: Result<Option<UrlCredentials>, String>| {
            let e = result.unwrap_err();
            assert!(e.starts_with("config key `nats.urls`: "), "{e}");
            assert!(!e.contains("s3cret"), "a credential in the error: {e}");
            e
        };
        let e = refused(of(&["nats://:s3cret@n1:4222"]));
        assert!(e.contains("a password without a user"), "{e}");
        let e = refused(of(&["nats://u:s3cret@n1:4222", "nats://u:q@n2:4222"]));
        assert!(e.contains("the server URLs carry different credentials"), "{e}");
        let e = refused(of(&["nats://u:%FF@n1:4222"]));
        assert!(e.contains("password in a server URL is not UTF-8"), "{e}");
        // Not also in [nats], whichever kind.
        for (key, config) in [
            (
                "user",
                NatsConfig {
                    user: Some("u".into()),
                    password: Some("p".into()),
                    ..plain.clone()
                },
            ),
            (
                "token",
                NatsConfig {
                    token: Some("t".into()),
                    ..plain.clone()
                },
            ),
            (
                "credentials_file",
                NatsConfig {
                    credentials_file: Some("a.creds".into()),
                    ..plain.clone()
                },
            ),
            (
                "nkey_seed_file",
                NatsConfig {
                    nkey_seed_file: Some("a.nk".into()),
                    ..plain.clone()
                },
            ),
        ] {
            let e = refused(with(&config, &["nats://u:s3cret@n1:4222"]));
            assert!(e.contains(&format!("in a server URL and in [nats] {key}")), "{e}");
            assert_eq!(with(&config, &["nats://n1:4222"]), Ok(None));
        }
    }

    #[test]
    fn a_refused_connection_points_at_the_credentials() {
        let refused = connect_problem("nats://n1:4222", "nats: authorization violation", false);
        assert!(refused.contains("the server refused the credentials"), "{refused}");
        assert!(!refused.contains("running there"), "{refused}");
        let down = connect_problem("nats://n1:4222", "nats: IO error", false);
        assert!(
            down.ends_with("(nats: IO error): is nats-server running there, and reachable?; retrying"),
            "{down}"
        );
    }

    #[tokio::test]
    async fn an_invalid_url_is_not_shown_when_the_list_holds_credentials() {
        let error = |urls: &[&str]| {
            let config = NatsConfig {
                urls: urls.iter().map(|u| u.to_string()).collect(),
                ..NatsConfig::url("nats://127.0.0.1:4222")
            };
            async move { connect(&config, &Flag::default()).await.err().map(|e| e.to_string()) }
        };
        // A password `s3cr,et` not percent-encoded, split at its comma.
        let e = error(&["nats://ops:s3cr", "et@127.0.0.1:4222"])
            .await
            .unwrap_or_default();
        assert!(
            e.starts_with("config key `nats.urls`: server URL 1 of 2 is invalid: "),
            "{e}"
        );
        assert!(e.contains("%2C for a comma") && !e.contains("s3cr"), "{e}");
        // Without credentials, the URL is named.
        let e = error(&["nats://127.0.0.1:x"]).await.unwrap_or_default();
        assert!(e.contains(r#""nats://127.0.0.1:x": "#), "{e}");
    }

    #[test]
    fn reconnect_delay_doubles_to_two_seconds_with_up_to_100_ms_of_jitter() {
        for (attempts, base) in [(0, 100), (1, 200), (3, 800), (4, 1600), (5, 2000), (usize::MAX, 2000)] {
            let waits: Vec<Duration> = (0..200).map(|_| reconnect_delay(attempts)).collect();
            let (least, most) = (waits.iter().min(), waits.iter().max());
            assert!(least >= Some(&Duration::from_millis(base)), "{attempts}: {least:?}");
            assert!(most <= Some(&Duration::from_millis(base + 100)), "{attempts}: {most:?}");
            assert!(least != most, "{attempts}: no jitter in 200 waits");
        }
    }
}
