//! Durability: SIGKILL under concurrent writes loses no acknowledged write.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;

use crate::{
    both_engines,
    harness::{Server, free_port},
};

both_engines!(acknowledged_writes_survive_sigkill, |db| async move {
    let port = free_port();
    let mut server = Server::start_on(&db.url, port, &[]).await;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..16 {
        let client = server.client.clone();
        let url = server.url("Patient");
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let body = json!({"resourceType": "Patient", "identifier": [{"system": "urn:test:crash", "value": format!("{w}-{n}")}]});
                let sent = client.post(&url).header("content-type", "application/fhir+json")
                    .header("prefer", "return=minimal").body(body.to_string()).send().await;
                match sent {
                    Ok(r) if r.status() == 201 => {
                        let location = r.headers()["location"].to_str().unwrap().to_string();
                        let path = location.split("/fhir/").nth(1).unwrap().split("/_history").next().unwrap().to_string();
                        acknowledged.lock().unwrap().push(path);
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => break, // the server is gone
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 50, "the writers made progress before the kill ({})", acknowledged.len());

    let server = Server::start_on(&db.url, port, &[]).await;
    let mut missing = Vec::new();
    for path in &acknowledged {
        let (status, _) = server.get(path).await;
        if status != 200 {
            missing.push(path.clone());
        }
    }
    assert!(missing.is_empty(), "{} of {} acknowledged writes lost: {:?}", missing.len(), acknowledged.len(), &missing[..missing.len().min(5)]);
    eprintln!("crash test: {} acknowledged writes all readable after SIGKILL", acknowledged.len());
});
