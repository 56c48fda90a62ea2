//! The gateway in front of a public MCP server from the npm registry,
//! `@modelcontextprotocol/server-filesystem`, run as a child process over stdio. `.ci/run`
//! installs it under `target/mcp-servers`; `ARBITER_MCP_SERVERS` names another folder. The
//! test fails, never skips, when it is missing.

use crate::support::*;
use arbiter_gateway::gateway::{APPROVAL_REQUIRED, DENIED};
use serde_json::json;
use std::path::PathBuf;

fn filesystem_server() -> PathBuf {
    let root = std::env::var_os("ARBITER_MCP_SERVERS").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/mcp-servers"
            ))
        },
        PathBuf::from,
    );
    let script = root.join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    assert!(
        script.is_file(),
        "`{}` is missing: run `npm install --prefix {} @modelcontextprotocol/server-filesystem` (as .ci/run does)",
        script.display(),
        root.display()
    );
    script
}

#[tokio::test]
async fn the_public_filesystem_server_behind_the_gateway() {
    tokio::time::timeout(BOUND, async {
        let script = filesystem_server();
        let files = tempfile::tempdir().unwrap();
        // The server resolves symlinks; so do we, so that paths match what it allows.
        let root = files.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("public")).unwrap();
        std::fs::create_dir_all(root.join("private")).unwrap();
        std::fs::write(root.join("public/hello.txt"), "hello").unwrap();
        std::fs::write(root.join("private/secret.txt"), "secret").unwrap();

        let arbiter = Arbiter::start().await;
        let upstreams = json!([{
            "name": "fs",
            "command": ["node", script, root],
        }]);
        let gateway = serve_gateway(config(upstreams, 0), arbiter.in_process()).await;
        let client = connect(&gateway, COPILOT_TOKEN).await;

        // The list is filtered: `move_file` is forbidden; `write_file` needs approval, so it shows.
        let names = tool_names(&client).await;
        assert!(names.contains(&"read_text_file".to_owned()), "{names:?}");
        assert!(names.contains(&"write_file".to_owned()), "{names:?}");
        assert!(!names.contains(&"move_file".to_owned()), "{names:?}");

        // Allowed, and decided by its arguments.
        let public = root.join("public/hello.txt");
        assert_eq!(
            call(&client, "read_text_file", json!({"path": public}))
                .await
                .unwrap(),
            "hello"
        );
        let error = call(
            &client,
            "read_text_file",
            json!({"path": root.join("private/secret.txt")}),
        )
        .await
        .unwrap_err();
        assert_eq!(error.code.0, DENIED, "{error:?}");
        assert!(
            error.message.contains("only files under public/"),
            "{error:?}"
        );
        let error = call(
            &client,
            "move_file",
            json!({"source": public, "destination": root.join("public/moved.txt")}),
        )
        .await
        .unwrap_err();
        assert_eq!(error.code.0, DENIED, "{error:?}");
        assert!(public.is_file(), "the denied move never happened");

        // The server itself marks write_file destructive: a person approves, then it runs once.
        let target = root.join("public/new.txt");
        let write = json!({"path": target, "content": "approved"});
        let error = call(&client, "write_file", write.clone())
            .await
            .unwrap_err();
        assert_eq!(error.code.0, APPROVAL_REQUIRED, "{error:?}");
        assert!(!target.exists());
        let approval = error.data.as_ref().unwrap()["approval"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        arbiter.approve(&approval).await;
        call(&client, "write_file", write).await.unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "approved");

        // Quarantine cuts the open session off at its next message.
        arbiter.quarantine("copilot").await;
        let error = call(&client, "read_text_file", json!({"path": public}))
            .await
            .unwrap_err();
        assert_eq!(error.code.0, DENIED, "{error:?}");
        assert!(tool_names(&client).await.is_empty());
    })
    .await
    .unwrap();
}
