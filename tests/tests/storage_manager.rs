//! storage_manager end to end through the Rust SDK: a real conductor (tokens) and key_manager
//! in-process, and storage_manager as its own process (`aerekos service storage-manager`) with its
//! SQLite file and object files in a temp dir, so its memory can be read and it can be killed.

use std::{collections::BTreeSet, io, path::Path};

use aerekos_sdk::{Conductor, KeyManager, SdkError, StorageManager, storage_manager::types};
use aerekos_tests::*;
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};

struct Env {
    conductor: TestConductor,
    key_manager: TestKeyManager,
    service: TestService,
    admin: Conductor,
    storage: StorageManager,
}

async fn env() -> Env {
    env_with(&[]).await
}

async fn env_with(extra_env: &[(&str, &str)]) -> Env {
    let conductor = TestConductor::start().await;
    let key_manager = TestKeyManager::start(&conductor).await;
    let service = TestService::start_with(
        &STORAGE_MANAGER,
        &conductor,
        &key_manager.url,
        None,
        extra_env,
    )
    .await;
    let admin = conductor.admin().await;
    let storage = service.storage_client(&admin);
    Env {
        conductor,
        key_manager,
        service,
        admin,
        storage,
    }
}

async fn create_bucket(storage: &StorageManager, name: &str, key: Option<&str>) -> types::Bucket {
    storage
        .create_bucket()
        .body_map(|b| b.name(name).default_encryption_key(key.map(str::to_owned)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {name}: {}", SdkError::from(e)))
        .into_inner()
}

async fn put(
    storage: &StorageManager,
    bucket: &str,
    key: &str,
    data: Vec<u8>,
) -> types::ObjectInfo {
    storage
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(data)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {}", SdkError::from(e)))
        .into_inner()
}

/// Status, headers and bytes of a download.
async fn get(
    storage: &StorageManager,
    bucket: &str,
    key: &str,
    range: Option<&str>,
) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), SdkError> {
    let mut call = storage.get_object().bucket(bucket).key(key);
    if let Some(r) = range {
        call = call.range(r);
    }
    let response = call.send().await?;
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body: Vec<Bytes> = response
        .into_inner()
        .into_inner()
        .try_collect()
        .await
        .map_err(|e| SdkError::Transport(e.to_string()))?;
    Ok((status, headers, body.concat()))
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// Deterministic bytes that differ at every offset (so a misplaced range shows).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn bucket_lifecycle_names_and_permissions() {
    let e = env().await;
    let b = create_bucket(&e.storage, "photos-2026", None).await;
    assert_eq!(b.name, "photos-2026");
    assert!(b.default_encryption_key.is_none());

    let err = failure(
        e.storage
            .create_bucket()
            .body_map(|b| b.name("photos-2026"))
            .send()
            .await,
    );
    expect_api_error(err, 409, "bucket_exists");
    for (bad, hint) in [
        ("ab", "3 to 63"),
        ("Photos", "lowercase"),
        ("my_bucket", "'_'"),
        ("-photos", "begin and end"),
        ("a..b", "'..'"),
        ("10.0.0.1", "IP address"),
        ("api", "reserved"),
    ] {
        let err = failure(
            e.storage
                .create_bucket()
                .body_map(|b| b.name(bad))
                .send()
                .await,
        );
        let body = expect_api_error(err, 400, "invalid_bucket_name");
        assert!(body.message.contains(hint), "{bad}: {}", body.message);
    }

    let names: Vec<String> = e
        .storage
        .list_buckets()
        .send()
        .await
        .unwrap()
        .into_inner()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["photos-2026"]);
    assert_eq!(
        e.storage
            .get_bucket()
            .bucket("photos-2026")
            .send()
            .await
            .unwrap()
            .into_inner()
            .name,
        "photos-2026"
    );
    expect_api_error(
        failure(e.storage.get_bucket().bucket("nope-bucket").send().await),
        404,
        "bucket_not_found",
    );

    // Not empty: refused, with the count; emptied: deleted.
    put(&e.storage, "photos-2026", "a.jpg", b"jpeg".to_vec()).await;
    let err = failure(e.storage.delete_bucket().bucket("photos-2026").send().await);
    let body = expect_api_error(err, 409, "bucket_not_empty");
    assert!(body.message.contains("1 object"), "{}", body.message);
    e.storage
        .delete_object()
        .bucket("photos-2026")
        .key("a.jpg")
        .send()
        .await
        .unwrap();
    e.storage
        .delete_bucket()
        .bucket("photos-2026")
        .send()
        .await
        .unwrap();
    assert!(
        e.storage
            .list_buckets()
            .send()
            .await
            .unwrap()
            .into_inner()
            .is_empty()
    );
    expect_api_error(
        failure(e.storage.delete_bucket().bucket("photos-2026").send().await),
        404,
        "bucket_not_found",
    );

    // Viewers read but do not change; no token is 401; keys are checked too.
    create_bucket(&e.storage, "shared", None).await;
    let viewer = e.service.storage_client(&e.conductor.viewer().await);
    assert_eq!(
        viewer
            .list_buckets()
            .send()
            .await
            .unwrap()
            .into_inner()
            .len(),
        1
    );
    expect_api_error(
        failure(
            viewer
                .create_bucket()
                .body_map(|b| b.name("mine"))
                .send()
                .await,
        ),
        403,
        "forbidden",
    );
    let err = failure(
        viewer
            .put_object()
            .bucket("shared")
            .key("x")
            .body(vec![1u8])
            .send()
            .await,
    );
    expect_api_error(err, 403, "forbidden");
    let anonymous = StorageManager::new(&e.service.url);
    expect_api_error(
        failure(anonymous.list_buckets().send().await),
        401,
        "unauthorized",
    );
    let err = failure(
        e.storage
            .put_object()
            .bucket("shared")
            .key("")
            .body(vec![1u8])
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_object_key");
    let err = failure(
        e.storage
            .put_object()
            .bucket("shared")
            .key("k".repeat(1025))
            .body(vec![1u8])
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_object_key");
    let err = failure(
        e.storage
            .put_object()
            .bucket("no-such-bucket")
            .key("k")
            .body(vec![1u8])
            .send()
            .await,
    );
    expect_api_error(err, 404, "bucket_not_found");
    let err = failure(
        e.storage
            .put_object()
            .bucket("shared")
            .key("k")
            .metadata("not json")
            .body(vec![1u8])
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_metadata");
}

#[tokio::test]
async fn objects_round_trip_at_every_size_with_ranges_and_metadata() {
    let e = env().await;
    create_bucket(&e.storage, "data", None).await;
    let ten_mib = pattern(10 << 20, 1);
    for (key, data) in [
        ("empty", vec![]),
        ("one", vec![42u8]),
        ("dir/sub dir/ten-MiB ü 日本.bin", ten_mib.clone()),
    ] {
        let info = put(&e.storage, "data", key, data.clone()).await;
        assert_eq!((info.key.as_str(), info.size), (key, data.len() as u64));
        let (status, headers, body) = get(&e.storage, "data", key, None).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body.len(), data.len(), "{key}");
        assert!(body == data, "{key}: bytes differ");
        assert_eq!(header(&headers, "etag"), format!("\"{}\"", info.etag));
        assert_eq!(header(&headers, "content-length"), data.len().to_string());
    }
    // The ETag of a single upload is the MD5 of its bytes (empty: d41d8cd9…).
    let empty = e
        .storage
        .head_object()
        .bucket("data")
        .key("empty")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(empty.headers(), "etag"),
        "\"d41d8cd98f00b204e9800998ecf8427e\""
    );

    // Ranges: first byte, a middle slice across a 256 KiB read boundary, a suffix, an open end.
    let key = "dir/sub dir/ten-MiB ü 日本.bin";
    let mid = 262_140usize;
    for (range, want, content_range) in [
        (
            "bytes=0-0",
            &ten_mib[..1],
            format!("bytes 0-0/{}", ten_mib.len()),
        ),
        (
            &format!("bytes={mid}-{}", mid + 9) as &str,
            &ten_mib[mid..mid + 10],
            format!("bytes {mid}-{}/{}", mid + 9, ten_mib.len()),
        ),
        (
            "bytes=-5",
            &ten_mib[ten_mib.len() - 5..],
            format!(
                "bytes {}-{}/{}",
                ten_mib.len() - 5,
                ten_mib.len() - 1,
                ten_mib.len()
            ),
        ),
        (
            &format!("bytes={}-", ten_mib.len() - 3),
            &ten_mib[ten_mib.len() - 3..],
            format!(
                "bytes {}-{}/{}",
                ten_mib.len() - 3,
                ten_mib.len() - 1,
                ten_mib.len()
            ),
        ),
    ] {
        let (status, headers, body) = get(&e.storage, "data", key, Some(range)).await.unwrap();
        assert_eq!(status, 206, "{range}");
        assert_eq!(body, want, "{range}");
        assert_eq!(header(&headers, "content-range"), content_range);
    }
    let err = get(
        &e.storage,
        "data",
        key,
        Some(&format!("bytes={}-", ten_mib.len())),
    )
    .await
    .unwrap_err();
    expect_api_error(err, 400, "range_not_satisfiable");
    expect_api_error(
        get(&e.storage, "data", key, Some("bytes=9-1"))
            .await
            .unwrap_err(),
        400,
        "invalid_range",
    );

    // Content type and user metadata come back on download, HEAD and listing.
    e.storage
        .put_object()
        .bucket("data")
        .key("notes/readme.txt")
        .content_type("text/plain; charset=utf-8")
        .metadata(r#"{"owner":"ci","note":"déjà vu"}"#)
        .body(b"hello".to_vec())
        .send()
        .await
        .unwrap();
    let (_, headers, _) = get(&e.storage, "data", "notes/readme.txt", None)
        .await
        .unwrap();
    assert_eq!(
        header(&headers, "content-type"),
        "text/plain; charset=utf-8"
    );
    let head = e
        .storage
        .head_object()
        .bucket("data")
        .key("notes/readme.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(head.headers(), "x-object-content-type"),
        "text/plain; charset=utf-8"
    );
    let metadata: serde_json::Value =
        serde_json::from_str(header(head.headers(), "x-object-metadata")).unwrap();
    assert_eq!(
        metadata,
        serde_json::json!({"owner": "ci", "note": "déjà vu"})
    );
    // Without the parameter, a specific request Content-Type becomes the object's; a generic one does not.
    let raw = reqwest::Client::new();
    for (sent, stored) in [
        ("image/png", "image/png"),
        ("application/octet-stream", "application/octet-stream"),
    ] {
        let url = format!(
            "{}/api/storage_manager/buckets/data/objects?key=typed",
            e.service.url
        );
        let info: serde_json::Value = raw
            .post(url)
            .bearer_auth(e.admin.token().unwrap())
            .header("content-type", sent)
            .body("bytes")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["content_type"], stored, "{sent}: {info}");
    }

    // An overwrite replaces; a delete removes, and a second delete is 404.
    put(&e.storage, "data", "one", vec![7, 7]).await;
    assert_eq!(
        get(&e.storage, "data", "one", None).await.unwrap().2,
        [7, 7]
    );
    e.storage
        .delete_object()
        .bucket("data")
        .key("one")
        .send()
        .await
        .unwrap();
    expect_api_error(
        get(&e.storage, "data", "one", None).await.unwrap_err(),
        404,
        "object_not_found",
    );
    expect_api_error(
        failure(
            e.storage
                .delete_object()
                .bucket("data")
                .key("one")
                .send()
                .await,
        ),
        404,
        "object_not_found",
    );

    // The replaced and deleted objects' files are removed (after their changes commit): one file
    // per live object.
    let blobs_dir = e.service.data_dir().join("blobs");
    eventually(10, "one blob file per live object", || {
        let n = files_under(&blobs_dir).len();
        async move { (n == 4).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn listing_2500_keys_with_prefix_delimiter_and_pages() {
    let e = env().await;
    create_bucket(&e.storage, "logs", None).await;
    // 2,500 keys: 2,000 under 5 "day" folders, 400 at top level, 100 under a deeper folder.
    let mut keys: Vec<String> = (0..2000)
        .map(|i| format!("2026/day-{}/entry-{i:04}.log", i % 5))
        .collect();
    keys.extend((0..400).map(|i| format!("top-{i:04}")));
    keys.extend((0..100).map(|i| format!("2026/archive/old/{i:03}")));
    stream::iter(keys.clone())
        .map(|key| {
            let storage = e.storage.clone();
            async move { put(&storage, "logs", &key, key.as_bytes().to_vec()).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;

    // Everything, 1,000 at a time: three pages, every key once, in byte order.
    let (mut seen, mut pages, mut token) = (Vec::new(), 0, None::<String>);
    loop {
        let mut call = e.storage.list_objects().bucket("logs").page_size(1000u32);
        if let Some(t) = &token {
            call = call.continuation_token(t.clone());
        }
        let page = call.send().await.unwrap().into_inner();
        pages += 1;
        assert!(page.objects.len() <= 1000);
        seen.extend(page.objects.into_iter().map(|o| o.key));
        match page.next_continuation_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(pages, 3);
    assert_eq!(seen, sorted);

    // One level: 400 top-level objects and one common prefix "2026/".
    let page = e
        .storage
        .list_objects()
        .bucket("logs")
        .delimiter("/")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.objects.len(), 400);
    assert_eq!(page.common_prefixes, ["2026/"]);

    // Inside 2026/: the five days and the archive as folders, no objects; paged 2 at a time.
    let (mut folders, mut token) = (Vec::new(), None::<String>);
    loop {
        let mut call = e
            .storage
            .list_objects()
            .bucket("logs")
            .prefix("2026/")
            .delimiter("/")
            .page_size(2u32);
        if let Some(t) = &token {
            call = call.continuation_token(t.clone());
        }
        let page = call.send().await.unwrap().into_inner();
        assert!(page.objects.is_empty());
        assert!(page.common_prefixes.len() <= 2);
        folders.extend(page.common_prefixes);
        match page.next_continuation_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(
        folders,
        [
            "2026/archive/",
            "2026/day-0/",
            "2026/day-1/",
            "2026/day-2/",
            "2026/day-3/",
            "2026/day-4/"
        ]
    );

    // A prefix alone: 400 entries of day 3, each one of them.
    let page = e
        .storage
        .list_objects()
        .bucket("logs")
        .prefix("2026/day-3/")
        .send()
        .await
        .unwrap()
        .into_inner();
    let day3: BTreeSet<String> = page.objects.into_iter().map(|o| o.key).collect();
    assert_eq!(day3.len(), 400);
    assert!(day3.iter().all(|k| k.starts_with("2026/day-3/entry-")));
    assert!(page.next_continuation_token.is_none());

    // start_after and bad arguments.
    let page = e
        .storage
        .list_objects()
        .bucket("logs")
        .start_after("top-0397")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.objects
            .iter()
            .map(|o| o.key.as_str())
            .collect::<Vec<_>>(),
        ["top-0398", "top-0399"]
    );
    let err = failure(
        e.storage
            .list_objects()
            .bucket("logs")
            .page_size(0u32)
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_page_size");
    let err = failure(
        e.storage
            .list_objects()
            .bucket("logs")
            .continuation_token("%%%")
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_continuation_token");
}

/// 1 GiB up and down as streams; the service's peak memory is read from /proc before and after.
#[tokio::test]
async fn one_gib_streams_through_with_flat_memory() {
    const MIB: usize = 1 << 20;
    const TOTAL_MIB: usize = 1024;
    let e = env().await;
    create_bucket(&e.storage, "big", None).await;
    let block = Bytes::from(pattern(MIB, 7));
    // Each MiB differs (its index in the first 8 bytes), so a misplaced MiB would show.
    let mib = move |i: usize| {
        let mut b = block.to_vec();
        b[..8].copy_from_slice(&(i as u64).to_be_bytes());
        Bytes::from(b)
    };
    let before = e.service.memory_kib("VmHWM");

    let upload = stream::iter(0..TOTAL_MIB).map({
        let mib = mib.clone();
        move |i| Ok::<_, io::Error>(mib(i))
    });
    let info = e
        .storage
        .put_object()
        .bucket("big")
        .key("one-gib.bin")
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .expect("1 GiB upload")
        .into_inner();
    assert_eq!(info.size, (TOTAL_MIB * MIB) as u64);

    let response = e
        .storage
        .get_object()
        .bucket("big")
        .key("one-gib.bin")
        .send()
        .await
        .expect("1 GiB download");
    let mut body = response.into_inner().into_inner();
    let (mut offset, mut pending) = (0usize, Vec::with_capacity(2 * MIB));
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk.expect("download chunk"));
        while pending.len() >= MIB {
            let i = offset / MIB;
            assert!(pending[..MIB] == mib(i)[..], "MiB {i} differs");
            pending.drain(..MIB);
            offset += MIB;
        }
    }
    assert!(pending.is_empty());
    assert_eq!(offset, TOTAL_MIB * MIB);

    let after = e.service.memory_kib("VmHWM");
    println!("storage_manager peak RSS: {before} KiB before, {after} KiB after 1 GiB up and down");
    // Flat: the peak grew by far less than the object (nothing holds it whole).
    assert!(
        after - before < 64 * 1024,
        "peak memory grew by {} KiB moving 1 GiB",
        after - before
    );
}

/// An upload cut off (client gone) or killed (process gone) halfway leaves the previous version,
/// no partial object, and no temporary file after the restart.
#[tokio::test]
async fn interrupted_uploads_leave_the_previous_version_and_no_files() {
    let e = env().await;
    create_bucket(&e.storage, "safe", None).await;
    let v1 = pattern(3 << 20, 3);
    put(&e.storage, "safe", "doc", v1.clone()).await;
    let tmp = e.service.data_dir().join("tmp");

    // An upload that sends 8 MiB and then stalls forever.
    let stalled_upload = |storage: StorageManager| {
        let first = stream::iter(
            (0..8).map(|i| Ok::<_, io::Error>(Bytes::from(pattern(1 << 20, 100 + i)))),
        );
        let body = first.chain(stream::pending());
        tokio::spawn(async move {
            storage
                .put_object()
                .bucket("safe")
                .key("doc")
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
        })
    };

    // 1. The client goes away mid-upload.
    let upload = stalled_upload(e.storage.clone());
    eventually(
        30,
        "the upload's temporary file holds 7 of the 8 MiB sent (the rest is in a write batch)",
        || {
            let tmp = tmp.clone();
            async move {
                files_under(&tmp)
                    .iter()
                    .any(|f| f.metadata().map(|m| m.len()).unwrap_or(0) >= 7 << 20)
                    .then_some(())
            }
        },
    )
    .await;
    upload.abort();
    eventually(
        10,
        "the temporary file is removed when the connection drops",
        || {
            let tmp = tmp.clone();
            async move { files_under(&tmp).is_empty().then_some(()) }
        },
    )
    .await;
    assert!(
        get(&e.storage, "safe", "doc", None).await.unwrap().2 == v1,
        "the previous version is intact"
    );

    // 2. The process is killed mid-upload; after a restart nothing of it is left.
    let mut service = e.service;
    let upload = stalled_upload(e.storage.clone());
    eventually(30, "the second upload's temporary file holds 7 MiB", || {
        let tmp = tmp.clone();
        async move {
            files_under(&tmp)
                .iter()
                .any(|f| f.metadata().map(|m| m.len()).unwrap_or(0) >= 7 << 20)
                .then_some(())
        }
    })
    .await;
    service.kill();
    assert!(
        !files_under(&tmp).is_empty(),
        "the kill left the partial upload on disk"
    );
    let _ = upload.await;
    service.start_again().await;
    assert!(
        files_under(&tmp).is_empty(),
        "the restart removed the partial upload: {:?}",
        files_under(&tmp)
    );
    let (_, headers, body) = get(&e.storage, "safe", "doc", None).await.unwrap();
    assert!(body == v1, "the previous version is intact after the kill");
    assert_eq!(header(&headers, "content-length"), v1.len().to_string());
    let page = e
        .storage
        .list_objects()
        .bucket("safe")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.objects.len(), 1);
    assert_eq!(
        files_under(&service.data_dir().join("blobs")).len(),
        1,
        "only the intact version's file remains"
    );
    drop((e.key_manager, e.conductor));
}

#[tokio::test]
async fn encrypted_objects_need_their_key_manager_key() {
    let e = env().await;
    let km = KeyManager::with_token(&e.key_manager.url, e.admin.token().unwrap());
    km.create_key()
        .body_map(|b| b.name("vault-key"))
        .send()
        .await
        .unwrap();
    km.create_key()
        .body_map(|b| b.name("other-key"))
        .send()
        .await
        .unwrap();

    // A bucket naming a key that does not exist is refused up front.
    let err = failure(
        e.storage
            .create_bucket()
            .body_map(|b| {
                b.name("bad-vault")
                    .default_encryption_key(Some("no-such-key".into()))
            })
            .send()
            .await,
    );
    expect_api_error(err, 400, "encryption_key_not_found");

    let bucket = create_bucket(&e.storage, "vault", Some("vault-key")).await;
    assert_eq!(bucket.default_encryption_key.as_deref(), Some("vault-key"));
    // A marker that must never reach the disk in the clear, spread through 1.2 MiB (several chunks).
    let marker = b"TOP-SECRET-MARKER-the-plaintext-must-not-reach-the-disk-0123456789";
    let mut secret = pattern(1_200_000, 9);
    for at in [0, 65_530, 600_000, 1_199_000] {
        secret[at..at + marker.len()].copy_from_slice(marker);
    }
    let info = put(&e.storage, "vault", "secret.bin", secret.clone()).await;
    assert_eq!(info.encryption_key.as_deref(), Some("vault-key"));
    assert!(
        get(&e.storage, "vault", "secret.bin", None)
            .await
            .unwrap()
            .2
            == secret
    );
    // A range across a chunk boundary decrypts just those chunks.
    let (status, _, slice) = get(&e.storage, "vault", "secret.bin", Some("bytes=65500-65600"))
        .await
        .unwrap();
    assert_eq!(status, 206);
    assert_eq!(slice, &secret[65_500..=65_600]);

    // On disk: the object's file is not the plaintext and holds no trace of the marker.
    let blobs = files_under(&e.service.data_dir().join("blobs"));
    assert_eq!(blobs.len(), 1);
    let on_disk = std::fs::read(&blobs[0]).unwrap();
    assert_eq!(
        on_disk.len(),
        secret.len() + 19 * 16,
        "1.2 MB in 19 chunks, each with its 16-byte tag"
    );
    for file in files_under(&e.service.data_dir()) {
        assert!(
            !contains(&std::fs::read(&file).unwrap(), marker),
            "{} holds the plaintext marker",
            file.display()
        );
    }

    // An upload may name another key; a plaintext bucket stays plaintext.
    let other = e
        .storage
        .put_object()
        .bucket("vault")
        .key("other")
        .encryption_key("other-key")
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.into_inner().encryption_key.as_deref(),
        Some("other-key")
    );

    // Disabled key: reads refused with a clear error, not garbage; other keys unaffected.
    km.disable_key().key("vault-key").send().await.unwrap();
    let err = get(&e.storage, "vault", "secret.bin", None)
        .await
        .unwrap_err();
    let body = expect_api_error(err, 409, "encryption_key_unusable");
    assert!(
        body.message.contains("vault-key") && body.message.contains("disabled"),
        "{}",
        body.message
    );
    let err = failure(
        e.storage
            .put_object()
            .bucket("vault")
            .key("new")
            .body(b"y".to_vec())
            .send()
            .await,
    );
    expect_api_error(err, 409, "encryption_key_unusable");
    assert_eq!(
        get(&e.storage, "vault", "other", None).await.unwrap().2,
        b"x"
    );

    // Enabled and rotated: the old object still reads, new ones use the new version.
    km.enable_key().key("vault-key").send().await.unwrap();
    km.rotate_key().key("vault-key").send().await.unwrap();
    assert!(
        get(&e.storage, "vault", "secret.bin", None)
            .await
            .unwrap()
            .2
            == secret
    );
    put(&e.storage, "vault", "after-rotation", b"fresh".to_vec()).await;
    assert_eq!(
        get(&e.storage, "vault", "after-rotation", None)
            .await
            .unwrap()
            .2,
        b"fresh"
    );

    // Scheduled for deletion: refused again.
    km.update_key()
        .key("vault-key")
        .body_map(|b| b.deletion_allowed(Some(true)))
        .send()
        .await
        .unwrap();
    km.schedule_key_deletion()
        .key("vault-key")
        .body_map(|b| b.waiting_period_secs(Some(3600)))
        .send()
        .await
        .unwrap();
    let err = get(&e.storage, "vault", "secret.bin", None)
        .await
        .unwrap_err();
    expect_api_error(err, 409, "encryption_key_unusable");
}

/// The S3 protocol endpoint, driven by boto3 (`tests/s3/boto3_suite.py`, which `cargo xtask test`
/// installs boto3 for): buckets, objects, ranges, listings (v1 and v2, url-encoded), copy, multipart
/// (50 MiB, part rules, UploadPartCopy), presigned URLs, bad signatures, streaming SigV4, Content-MD5,
/// conditional requests, kept headers, tagging, SSE-KMS. Then a revoked access key is refused.
#[tokio::test]
async fn s3_protocol_via_boto3() {
    // Lifecycle rules are tested with a 2-second "day", applied every second; buckets are also
    // virtual hosts under s3.test.
    let e = env_with(&[
        ("LIFECYCLE_DAY_SECS", "2"),
        ("LIFECYCLE_INTERVAL_SECS", "1"),
        ("S3_DOMAIN", "s3.test"),
    ])
    .await;
    let km = KeyManager::with_token(&e.key_manager.url, e.admin.token().unwrap());
    km.create_key()
        .body_map(|b| b.name("s3-kms-key"))
        .send()
        .await
        .unwrap();
    let key = e
        .storage
        .create_access_key()
        .body_map(|b| b.description("boto3 suite"))
        .send()
        .await
        .unwrap()
        .into_inner();
    let secret = key
        .secret
        .clone()
        .expect("the secret comes with the new key");
    assert!(key.id.starts_with("AK") && key.id.len() == 20 && secret.len() == 40);
    // Only its creation shows the secret; viewers cannot manage keys.
    let listed = e
        .storage
        .list_access_keys()
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(listed.iter().all(|k| k.secret.is_none()));
    let viewer = e.service.storage_client(&e.conductor.viewer().await);
    expect_api_error(
        failure(viewer.list_access_keys().send().await),
        403,
        "forbidden",
    );

    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("s3/boto3_suite.py");
    // Async: key_manager runs on this test's runtime and must keep answering while boto3 works.
    let out = tokio::process::Command::new("python3")
        .arg(&suite)
        .env("S3_ENDPOINT", &e.service.url)
        .env("S3_ACCESS_KEY", &key.id)
        .env("S3_SECRET_KEY", &secret)
        .env("S3_KMS_KEY", "s3-kms-key")
        .env("S3_API_URL", &e.service.url)
        .env("S3_ADMIN_TOKEN", e.admin.token().unwrap())
        .output()
        .await
        .expect("running python3 (cargo xtask test installs boto3)");
    let report = String::from_utf8_lossy(&out.stderr);
    println!("{report}");
    assert!(
        out.status.success(),
        "boto3 suite failed:\n{report}\nservice log:\n{}",
        e.service.log()
    );
    let tests = std::fs::read_to_string(&suite)
        .unwrap()
        .matches("    def test_")
        .count();
    assert!(
        report.contains(&format!("Ran {tests} tests")),
        "the suite ran every one of its {tests} tests:\n{report}"
    );

    // Every multipart part, replaced object and deleted object left no file behind: one blob per
    // object still listed.
    let mut objects = 0;
    for bucket in e.storage.list_buckets().send().await.unwrap().into_inner() {
        objects += e
            .storage
            .list_objects()
            .bucket(&bucket.name)
            .send()
            .await
            .unwrap()
            .into_inner()
            .objects
            .len();
    }
    let blobs_dir = e.service.data_dir().join("blobs");
    eventually(10, "one blob file per object", || {
        let n = files_under(&blobs_dir).len();
        async move { (n == objects).then_some(()) }
    })
    .await;

    // Revoked: the same pair is refused from then on.
    let revoked = e
        .storage
        .revoke_access_key()
        .id(&key.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at.is_some());
    let out = tokio::process::Command::new("python3")
        .args(["-c", "import boto3,os\nfrom botocore.config import Config\ns3=boto3.client('s3',endpoint_url=os.environ['E'],aws_access_key_id=os.environ['A'],aws_secret_access_key=os.environ['S'],region_name='us-east-1',config=Config(s3={'addressing_style':'path'}))\ntry:\n s3.list_buckets(); print('ALLOWED')\nexcept Exception as e:\n print(e.response['Error']['Code'])"])
        .env("E", &e.service.url)
        .env("A", &key.id)
        .env("S", &secret)
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "InvalidAccessKeyId",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect_api_error(
        failure(e.storage.revoke_access_key().id("AKNOPE").send().await),
        404,
        "access_key_not_found",
    );
}

/// A service token is renewed by a restart: from SERVICE_TOKEN_RENEW_BEFORE ahead of its expiry
/// `/health` fails, so the worker (which restarts instances unhealthy for 6 probes, as the
/// orchestration tests show) starts it again with a fresh token while the old one still works.
#[tokio::test]
async fn health_fails_ahead_of_the_service_token_expiry() {
    let conductor = TestConductor::start().await;
    let key_manager = TestKeyManager::start(&conductor).await;
    let due = TestService::start_with(
        &STORAGE_MANAGER,
        &conductor,
        &key_manager.url,
        Some(120),
        &[("SERVICE_TOKEN_RENEW_BEFORE", "3600")],
    )
    .await;
    let resp = reqwest::get(format!("{}/health", due.url)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "service_token_expiring", "{body}");
    // It still serves meanwhile: the token is valid until it expires.
    let admin = conductor.admin().await;
    create_bucket(&due.storage_client(&admin), "still-serving", None).await;

    // A 30-day token against the default window of a day: healthy.
    let fresh = TestService::start(&STORAGE_MANAGER, &conductor, &key_manager.url).await;
    assert_eq!(
        reqwest::get(format!("{}/health", fresh.url))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

/// Runs `script` with boto3 against the service's S3 endpoint (`s3` is the client); its stdout.
async fn boto3(service_url: &str, key: &types::AccessKey, script: &str) -> String {
    let preamble = "import boto3, os\nfrom botocore.config import Config\n\
        s3 = boto3.client('s3', endpoint_url=os.environ['E'], aws_access_key_id=os.environ['A'], aws_secret_access_key=os.environ['S'], \
        region_name='us-east-1', config=Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))\n";
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(format!("{preamble}{script}"))
        .env("E", service_url)
        .env("A", &key.id)
        .env("S", key.secret.as_deref().unwrap())
        .output()
        .await
        .expect("python3 with boto3 (cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Earlier versions and delete markers are as durable as current objects: after a SIGKILL and a
/// restart (whose sweep removes every file no row names) each version reads back, and every file
/// still on disk is one a version names.
#[tokio::test]
async fn earlier_versions_survive_a_kill_and_a_restart() {
    let e = env().await;
    let key = e
        .storage
        .create_access_key()
        .body_map(|b| b.description("versions"))
        .send()
        .await
        .unwrap()
        .into_inner();
    let versions = boto3(
        &e.service.url,
        &key,
        "s3.create_bucket(Bucket='kept')\n\
         s3.put_bucket_versioning(Bucket='kept', VersioningConfiguration={'Status': 'Enabled'})\n\
         v1 = s3.put_object(Bucket='kept', Key='doc', Body=b'first')['VersionId']\n\
         v2 = s3.put_object(Bucket='kept', Key='doc', Body=b'second')['VersionId']\n\
         s3.delete_object(Bucket='kept', Key='doc')\n\
         print(v1, v2)",
    )
    .await;
    let mut service = e.service;
    service.kill();
    service.start_again().await;
    let script = format!(
        "v1, v2 = {:?}.split()\n\
         print(s3.get_object(Bucket='kept', Key='doc', VersionId=v1)['Body'].read().decode(), \
         s3.get_object(Bucket='kept', Key='doc', VersionId=v2)['Body'].read().decode(), \
         len(s3.list_object_versions(Bucket='kept')['DeleteMarkers']))",
        versions
    );
    assert_eq!(boto3(&service.url, &key, &script).await, "first second 1");
    assert_eq!(
        files_under(&service.data_dir().join("blobs")).len(),
        2,
        "one file per kept version, none lost, none left over"
    );
    drop((e.key_manager, e.conductor));
}
