//! The generated files and the JVM command line of a test node: the single one, or one of the
//! ring's three (`services up --cluster`).
//!
//! Nothing is copied from Cassandra's tarball: `cassandra.yaml` holds only the keys a loopback
//! node needs (5.0 rejects unknown keys at startup), logback writes to the console (captured in
//! `.services/cassandra/cassandra.log`), and the JVM flags are those of Cassandra 5.0's
//! `jvm-server.options` and `jvm17-server.options`, minus the ones that only slow a test node.

use std::net::Ipv4Addr;
use std::path::Path;

/// Where one node listens and how it finds the others.
#[derive(Debug, Clone, Copy)]
pub(in crate::services) struct NodeYaml<'a> {
    /// `cluster_name`: every node of a ring has the same.
    pub(in crate::services) cluster: &'a str,
    /// `listen_address` and `rpc_address`.
    pub(in crate::services) address: Ipv4Addr,
    pub(in crate::services) native_port: u16,
    pub(in crate::services) storage_port: u16,
    /// The seeds' addresses; each listens on `storage_port` too.
    pub(in crate::services) seeds: &'a [Ipv4Addr],
    /// The node's one token (Murmur3, as a decimal string).
    pub(in crate::services) initial_token: &'a str,
}

/// `cassandra.yaml` for one node.
///
/// `initial_token` with `num_tokens: 1` avoids token allocation (and its 30 s wait for schema);
/// `auto_bootstrap: false` lets the nodes of a new, empty ring start together, each owning its
/// token at once; data, commitlog, hints and saved caches default to `$cassandra.storagedir/*`.
pub(in crate::services) fn cassandra_yaml(node: &NodeYaml<'_>) -> String {
    let NodeYaml {
        cluster,
        address,
        native_port,
        storage_port,
        seeds,
        initial_token,
    } = *node;
    let seeds = seeds
        .iter()
        .map(|seed| format!("{seed}:{storage_port}"))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "# Written by `cargo xtask services up`: a test node (docs/services.md).
cluster_name: '{cluster}'
num_tokens: 1
initial_token: '{initial_token}'
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: \"{seeds}\"
listen_address: {address}
rpc_address: {address}
storage_port: {storage_port}
native_transport_port: {native_port}
start_native_transport: true
auto_bootstrap: false
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_disk_access_mode: legacy
hinted_handoff_enabled: false
auto_snapshot: false
concurrent_compactors: 1
write_request_timeout: 5000ms
read_request_timeout: 10000ms
cas_contention_timeout: 5000ms
"
    )
}

/// Logback configuration: INFO and above to the console.
pub(in crate::services) const LOGBACK_XML: &str = r#"<!-- Written by `cargo xtask services up`; stdout is cassandra.log -->
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %logger{0} - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"#;

/// JVM flags from Cassandra 5.0's `jvm-server.options` that matter for a small node (the heap
/// is set per node). Left out: `-XX:+AlwaysPreTouch` (touches the whole heap at start),
/// `-XX:G1HeapRegionSize=16m`, `-XX:+UseNUMA`, GC logging and the hotspot compiler command file.
const SERVER_FLAGS: &[&str] = &[
    "-Xss256k",
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:MaxGCPauseMillis=300",
    "-XX:+UseThreadPriorities",
    "-XX:+PerfDisableSharedMem",
    "-XX:+ExitOnOutOfMemoryError",
    "-ea",
    "-da:net.openhft...",
    "-Djdk.attach.allowAttachSelf=true",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "-Djava.net.preferIPv4Stack=true",
    "-Dchronicle.analytics.disable=true",
    // Keeps System.out open (CassandraDaemon closes it otherwise); our log is stdout.
    "-Dcassandra-foreground=yes",
    // A node that is its own seed has nothing to wait for; the ring's nodes start together on an
    // empty ring, with their tokens given, so they need not wait either.
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=1000",
    // No fsync on system keyspace flushes: faster schema changes; the data is thrown away anyway.
    UNSAFE_SYSTEM,
];

/// Skips the flush (and fsync) of the schema tables after each schema change. The single node
/// keeps it; the ring's nodes do not, because their nodes are killed with SIGKILL: a node
/// killed after a schema change it had not flushed came back without the keyspace (commit log
/// replay skipped the new table's writes as "unknown CF"), and learnt it again only when it
/// next pulled the schema from a peer (docs/services.md, "After a kill").
pub(in crate::services) const UNSAFE_SYSTEM: &str = "-Dcassandra.unsafesystem=true";

/// `jvm17-server.options`, plus the jdk.attach/jdk.compiler exports `cassandra.in.sh` adds.
const JDK17_MODULE_FLAGS: &[(&str, &str)] = &[
    ("--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED"),
    (
        "--add-exports",
        "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    ),
    (
        "--add-exports",
        "java.management/com.sun.jmx.remote.security=ALL-UNNAMED",
    ),
    ("--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED"),
    ("--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED"),
    ("--add-exports", "java.sql/java.sql=ALL-UNNAMED"),
    ("--add-exports", "java.base/java.lang.ref=ALL-UNNAMED"),
    ("--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED"),
    ("--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED"),
    (
        "--add-exports",
        "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    ),
    (
        "--add-opens",
        "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    ),
    ("--add-opens", "java.base/java.lang.module=ALL-UNNAMED"),
    ("--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED"),
    ("--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED"),
    ("--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED"),
    ("--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED"),
    ("--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED"),
    ("--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED"),
    (
        "--add-opens",
        "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    ),
    ("--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED"),
    ("--add-opens", "java.base/java.io=ALL-UNNAMED"),
    ("--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED"),
    ("--add-opens", "java.base/java.lang=ALL-UNNAMED"),
    ("--add-opens", "java.base/java.util=ALL-UNNAMED"),
    ("--add-opens", "java.base/java.nio=ALL-UNNAMED"),
];

/// The daemon's main class.
pub(in crate::services) const MAIN: &str = "org.apache.cassandra.service.CassandraDaemon";

/// Every JVM argument before the main class, for a node whose state lives in `dir` (`conf/`,
/// `run/`), whose jars are in `lib` and whose memory agent is `jamm`, with the `heap` flags
/// (`-Xms…`, `-Xmx…`).
pub(in crate::services) fn jvm_args(
    dir: &Path,
    lib: &Path,
    jamm: &Path,
    heap: [&str; 2],
) -> Vec<String> {
    let at = |sub: &str| dir.join(sub).display().to_string();
    let mut args: Vec<String> = heap.iter().map(|&flag| flag.to_owned()).collect();
    args.extend(SERVER_FLAGS.iter().map(|&flag| flag.to_owned()));
    args.extend(
        JDK17_MODULE_FLAGS
            .iter()
            .flat_map(|&(flag, value)| [flag.to_owned(), value.to_owned()]),
    );
    args.extend([
        format!("-javaagent:{}", jamm.display()),
        format!("-XX:ErrorFile={}/hs_err_pid%p.log", at("run")),
        // JNA unpacks libjnidispatch here; it must allow exec.
        format!("-Djava.io.tmpdir={}", at("run/tmp")),
        format!("-Djna.tmpdir={}", at("run/tmp")),
        // Must be a URL: a bare path is looked up on the classpath.
        format!("-Dcassandra.config=file://{}", at("conf/cassandra.yaml")),
        format!("-Dcassandra.storagedir={}", at("run")),
        format!("-Dcassandra.logdir={}", at("run/logs")),
        format!("-Dcassandra.triggers_dir={}", at("run/triggers")),
        format!("-Dlogback.configurationFile={}", at("conf/logback.xml")),
        "-cp".to_owned(),
        format!("{}/*", lib.display()),
    ]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINGLE: NodeYaml<'static> = NodeYaml {
        cluster: "kernel-test",
        address: Ipv4Addr::LOCALHOST,
        native_port: 19042,
        storage_port: 17000,
        seeds: &[Ipv4Addr::LOCALHOST],
        initial_token: "0",
    };

    #[test]
    fn yaml_names_private_ports_and_itself_as_seed() {
        let yaml = cassandra_yaml(&SINGLE);
        for line in [
            "native_transport_port: 19042",
            "storage_port: 17000",
            "      - seeds: \"127.0.0.1:17000\"",
            "listen_address: 127.0.0.1",
            "rpc_address: 127.0.0.1",
            "cluster_name: 'kernel-test'",
            "initial_token: '0'",
            "auto_bootstrap: false",
        ] {
            assert!(yaml.lines().any(|l| l == line), "missing {line:?}");
        }
    }

    #[test]
    fn a_ring_node_listens_on_its_own_address_and_names_every_seed() {
        let seeds = [
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(127, 0, 0, 2),
            Ipv4Addr::new(127, 0, 0, 3),
        ];
        let yaml = cassandra_yaml(&NodeYaml {
            cluster: "kernel-cluster",
            address: seeds[1],
            seeds: &seeds,
            initial_token: "-3074457345618258603",
            ..SINGLE
        });
        for line in [
            "      - seeds: \"127.0.0.1:17000,127.0.0.2:17000,127.0.0.3:17000\"",
            "listen_address: 127.0.0.2",
            "rpc_address: 127.0.0.2",
            "initial_token: '-3074457345618258603'",
        ] {
            assert!(yaml.lines().any(|l| l == line), "missing {line:?}");
        }
    }

    #[test]
    fn yaml_leaves_out_keys_that_slow_or_break_a_5_0_node() {
        let yaml = cassandra_yaml(&SINGLE);
        for key in [
            "allocate_tokens_for_local_replication_factor",
            "crypto_provider",
            "start_rpc",
            "rpc_port",
        ] {
            assert!(!yaml.contains(key), "{key} must not be set");
        }
    }

    #[test]
    fn jvm_args_point_every_location_into_the_state_dir() {
        let dir = Path::new("/x/.services/cassandra");
        let lib = dir.join("lib");
        let args = jvm_args(dir, &lib, &lib.join("jamm-0.4.0.jar"), ["-Xms1m", "-Xmx2m"]);
        for expected in [
            "-javaagent:/x/.services/cassandra/lib/jamm-0.4.0.jar",
            "-Dcassandra.config=file:///x/.services/cassandra/conf/cassandra.yaml",
            "-Dcassandra.storagedir=/x/.services/cassandra/run",
            "-Djna.tmpdir=/x/.services/cassandra/run/tmp",
            "/x/.services/cassandra/lib/*",
        ] {
            assert!(args.iter().any(|a| a == expected), "missing {expected}");
        }
        assert_eq!(args[..2], ["-Xms1m", "-Xmx2m"]);
        let opens = args.iter().filter(|a| *a == "--add-opens").count();
        assert_eq!(opens, 15);
    }
}
