//! S3 settings fall back to the usual AWS environment variables. Its own test binary: it
//! changes the process environment, which no other test may see.

#![cfg(feature = "s3")]

use chaos_tests::S3Server;
use keel_storage::{StorageDir, StorageOptions};

#[tokio::test]
async fn s3_settings_fall_back_to_aws_env_vars() {
    let s3 = S3Server::start().unwrap_or_else(|e| panic!("{e}"));
    s3.create_bucket("keel-env").unwrap();
    // The only test in this binary: nothing else reads the environment concurrently.
    std::env::set_var("AWS_ENDPOINT_URL", s3.endpoint());
    std::env::set_var("AWS_REGION", S3Server::REGION);
    std::env::set_var("AWS_ACCESS_KEY_ID", S3Server::ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", S3Server::SECRET_KEY);

    let options = StorageOptions { s3_path_style_access: true, ..StorageOptions::default() };
    let dir = StorageDir::open("s3://keel-env/from-env", &options).unwrap();
    dir.write_once("a", b"env").await.unwrap();
    assert_eq!(dir.read("a").await.unwrap(), b"env");
    assert_eq!(s3.get_object("keel-env", "from-env/a").unwrap().as_deref(), Some(&b"env"[..]));

    // Options win over the environment: a wrong endpoint in the options is used (and fails).
    let options = StorageOptions::default()
        .with_s3_endpoint("http://127.0.0.1:1")
        .with_op_timeout(std::time::Duration::from_secs(1))
        .with_retries(0);
    let dir = StorageDir::open("s3://keel-env/from-env", &options).unwrap();
    let err = dir.read("a").await.unwrap_err();
    assert!(err.is_temporary() && err.to_string().contains("127.0.0.1:1/"), "{err}");
}
