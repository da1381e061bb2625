//! Reaching a secured etcd: https checked against DEPLOY_LOCK_ETCD_CACERT,
//! and user/password auth (a refused login is a typed error naming the
//! endpoint; a missing one is refused at the first operation).

use std::time::{Duration, Instant};

use deploy_lock::Environment;
use deploy_lock::etcd::settings::Credentials;
use deploy_lock::etcd::{Acquire, Client, EtcdError, EtcdStore, Release, this_process};

use crate::etcd_support;

fn take_and_release(client: Client, test: &str) {
    let store = EtcdStore::new(client, &etcd_support::prefix(test), Duration::from_secs(10));
    let me = this_process(Environment::Staging, "it@secure").unwrap();
    let Acquire::Acquired(lock) = store.try_acquire(Environment::Staging, &me).unwrap() else {
        panic!("busy")
    };
    assert!(store.check(Environment::Staging, lock.token()).unwrap());
    assert_eq!(lock.release().unwrap(), Release::Released);
}

#[test]
fn https_with_the_ca_file_works_and_without_it_is_refused() {
    let test = "etcd_access::https_with_the_ca_file_works_and_without_it_is_refused";
    let Some(etcd) = etcd_support::own_tls(test) else {
        return;
    };
    assert!(etcd.endpoint.starts_with("https://"));
    take_and_release(etcd.client(), "tls");

    // Mozilla's roots do not know our CA.
    let mut cfg = etcd.config();
    cfg.ca_file = None;
    let t = Instant::now();
    let e = Client::connect(&cfg).err().expect("an unknown issuer");
    assert!(
        matches!(&e, EtcdError::Unreachable { endpoint, .. } if *endpoint == etcd.endpoint),
        "{e:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));

    // A CA file that is not one.
    let bogus = etcd.dir.join("not-a-ca.pem");
    std::fs::write(&bogus, "hello\n").unwrap();
    cfg.ca_file = Some(bogus.clone());
    match Client::connect(&cfg).err().expect("no certificate") {
        EtcdError::CaFile { path, detail } => {
            assert_eq!(path, bogus);
            assert_eq!(detail, "holds no PEM certificate");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn user_and_password_log_in_and_a_wrong_password_is_refused() {
    let test = "etcd_access::user_and_password_log_in_and_a_wrong_password_is_refused";
    let Some(etcd) = etcd_support::own(test) else {
        return;
    };
    if etcd_support::etcdctl(
        test,
        &etcd,
        &["user", "add", "root:rootpw", "--interactive=false"],
    )
    .is_none()
    {
        return;
    }
    etcd_support::etcdctl(test, &etcd, &["auth", "enable"]);

    let login = |password: &str| {
        let mut cfg = etcd.config();
        cfg.credentials = Some(Credentials {
            user: "root".into(),
            password: password.into(),
        });
        Client::connect(&cfg)
    };
    take_and_release(login("rootpw").unwrap(), "auth");

    let e = login("wrong").err().expect("refused");
    assert!(
        matches!(&e, EtcdError::AuthRefused { endpoint, .. } if *endpoint == etcd.endpoint),
        "{e:?}"
    );
    assert!(
        !e.to_string().contains("wrong"),
        "never echo the password: {e}"
    );

    // No credentials: reachable, but the first operation is refused.
    let store = EtcdStore::new(etcd.client(), "/it/auth-none", Duration::from_secs(10));
    let e = store.inspect(Environment::Staging).unwrap_err();
    assert!(
        matches!(&e, EtcdError::PermissionDenied { endpoint, .. } if *endpoint == etcd.endpoint),
        "{e:?}"
    );
}
