/*
** test_config.c -- rf_config_load(): good configs load with their defaults,
** every kind of bad config fails with a message naming the file and field.
*/
#include "rafting/config.h"
#include "rafting/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define NODE1 "{ id = 1, peer = '127.0.0.1:7001', http = '127.0.0.1:8001' }"
#define NODE2 "{ id = 2, peer = '127.0.0.1:7002', http = '127.0.0.1:8002' }"

static char tmp_path[64];

/* Write src to a fresh temp file; its name is in tmp_path. */
static void write_tmp(const char *src, size_t len) {
  strcpy(tmp_path, "/tmp/rf_cfg_XXXXXX.lua");
  int fd = mkstemps(tmp_path, 4);
  if (fd < 0 || write(fd, src, len) != (ssize_t)len) {
    perror("mkstemps/write");
    exit(1);
  }
  close(fd);
}

static int load_src(const char *src, rf_config *c, char *err, size_t n) {
  write_tmp(src, strlen(src));
  int rc = rf_config_load(tmp_path, c, err, n);
  unlink(tmp_path);
  return rc;
}

/* src must load; the rf_config is returned for inspection. */
static int good(const char *src, rf_config *c) {
  char err[512] = "";
  int rc = load_src(src, c, err, sizeof err);
  if (rc != 0) fprintf(stderr, "unexpected error: %s\n", err);
  return rc == 0;
}

/* src must fail with a message that names the file and contains each of
** the NULL-terminated substrings. */
static void bad_(int line, const char *src, ...) {
  char err[1024] = "";
  rf_config c;
  va_list ap;
  int rc = load_src(src, &c, err, sizeof err);
  if (rc == 0) {
    fprintf(stderr, "%s:%d: config loaded but should fail:\n%s\n", __FILE__,
            line, src);
    failures++;
    rf_config_free(&c);
    return;
  }
  CHECK(c.nodes == NULL && c.n_nodes == 0 && c.cluster == NULL);
  int ok = strstr(err, tmp_path) != NULL;
  va_start(ap, src);
  for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
    ok = ok && strstr(err, s) != NULL;
  va_end(ap);
  if (!ok) {
    fprintf(stderr, "%s:%d: unexpected message: %s\n", __FILE__, line, err);
    failures++;
  }
}

#define bad(...) bad_(__LINE__, __VA_ARGS__, NULL)

static void test_defaults(void) {
  rf_config c;
  if (!good("return { cluster = 'c1', nodes = { " NODE1 " } }", &c)) {
    failures++;
    return;
  }
  CHECK(strcmp(c.cluster, "c1") == 0);
  CHECK(c.n_nodes == 1 && c.nodes[0].id == 1);
  CHECK(strcmp(c.nodes[0].peer_host, "127.0.0.1") == 0);
  CHECK(c.nodes[0].peer_port == 7001 && c.nodes[0].http_port == 8001);
  CHECK(c.tick_ms == 10 && c.election_ticks == 30 && c.heartbeat_ticks == 5);
  CHECK(c.pre_vote == 1 && c.check_quorum == 1);
  CHECK(strcmp(c.storage, "memory") == 0 && c.commands == NULL);
  CHECK(c.max_frame_bytes == 4u << 20 && c.max_msg_bytes == 2u << 20);
  CHECK(c.max_snapshot_bytes == 1u << 30 && c.peer_buffer_bytes == 32u << 20);
  CHECK(c.peer_handshake_timeout_ms == 5000 && c.peer_frame_timeout_ms == 10000);
  CHECK(c.max_peer_connections == 4); /* 4 per node */
  CHECK(c.loop_warn_ms == 100);
  CHECK(c.snapshot_entries == 0 && c.snapshot_log_bytes == 1u << 30);
  CHECK(c.snapshot_log_percent == 50 &&
        c.snapshot_min_log_bytes == 4u << 20);
  CHECK(c.max_inflight == 64 && c.send_queue_bytes == 8u << 20);
  CHECK(c.max_inflight_bytes == 4u << 20);
  CHECK(c.max_body_bytes == 1u << 20 && c.max_header_bytes == 8u << 10);
  CHECK(c.max_url_bytes == 4u << 10 && c.max_connections == 1024);
  CHECK(c.idle_timeout_ms == 30000 && c.request_timeout_ms == 10000);
  CHECK(c.forward_timeout_ms == 5000);
  CHECK(strcmp(c.path, tmp_path) == 0);
  CHECK(rf_config_node(&c, 1) == &c.nodes[0] && !rf_config_node(&c, 2));
  rf_config_free(&c);
}

static void test_overrides(void) {
  rf_config c;
  const char *src =
      "local t = { tick_ms = 5, election_ticks = 20, heartbeat_ticks = 2,\n"
      "            pre_vote = false, check_quorum = false }\n"
      "return { cluster = 'c-2.x', timing = t, storage = '/data/n%d',\n"
      "  nodes = { { id = 7.0, peer = '[::1]:7001', http = 'localhost:80' },\n"
      "            { id = 9, peer = '10.0.0.2:7001', http = '[::1]:8001' } },\n"
      "  limits = { max_body_bytes = 100, max_connections = 3,\n"
      "             request_timeout_ms = 200, max_frame_bytes = 65536,\n"
      "             max_msg_bytes = 16384 } }\n";
  if (!good(src, &c)) {
    failures++;
    return;
  }
  CHECK(c.tick_ms == 5 && c.election_ticks == 20 && c.heartbeat_ticks == 2);
  CHECK(c.pre_vote == 0 && c.check_quorum == 0);
  CHECK(strcmp(c.storage, "/data/n%d") == 0);
  CHECK(c.nodes[0].id == 7 && strcmp(c.nodes[0].peer_host, "::1") == 0);
  CHECK(strcmp(c.nodes[0].http_host, "localhost") == 0);
  CHECK(c.nodes[0].http_port == 80 && c.nodes[1].id == 9);
  CHECK(c.max_body_bytes == 100 && c.max_connections == 3);
  CHECK(c.request_timeout_ms == 200 && c.max_frame_bytes == 65536);
  CHECK(c.max_url_bytes == 4096); /* untouched limits keep defaults */
  rf_config_free(&c);
}

/* The shipped configs load (RAFTING_SOURCE_DIR: set by CMake). */
static void test_shipped(void) {
  static const struct { const char *name; size_t n; } files[] = {
      {"local3.lua", 3}, {"single.lua", 1}, {"local5.lua", 5}};
  char path[600], err[512];
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    rf_config c;
    snprintf(path, sizeof path, "%s/config/%s", RAFTING_SOURCE_DIR,
             files[i].name);
    int rc = rf_config_load(path, &c, err, sizeof err);
    if (rc != 0) fprintf(stderr, "%s: %s\n", path, err);
    CHECK(rc == 0);
    if (rc != 0) continue;
    CHECK(c.n_nodes == files[i].n);
    for (size_t j = 0; j < c.n_nodes; j++) {
      CHECK(c.nodes[j].id == j + 1);
      CHECK(c.nodes[j].peer_port == 7001 + (int)j);
      CHECK(c.nodes[j].http_port == 8001 + (int)j);
    }
    rf_config_free(&c);
  }
}

/* commands resolves against the config's directory and must be readable. */
static void test_commands(void) {
  char dir[] = "/tmp/rf_cfgdir_XXXXXX", cfg[128], cmd[128], err[512];
  rf_config c;
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    exit(1);
  }
  snprintf(cfg, sizeof cfg, "%s/c.lua", dir);
  snprintf(cmd, sizeof cmd, "%s/cmds.lua", dir);
  FILE *f = fopen(cfg, "w");
  fputs("return { cluster = 'x', commands = 'cmds.lua', nodes = {" NODE1
        "} }", f);
  fclose(f);
  CHECK(rf_config_load(cfg, &c, err, sizeof err) == -1);
  CHECK(strstr(err, "commands: cannot read") && strstr(err, cmd));
  f = fopen(cmd, "w");
  fputs("return {}\n", f);
  fclose(f);
  CHECK(rf_config_load(cfg, &c, err, sizeof err) == 0);
  CHECK(c.commands && strcmp(c.commands, cmd) == 0);
  rf_config_free(&c);
  unlink(cmd);
  unlink(cfg);
  rmdir(dir);
}

/* tls: three paths, relative to the config's directory, "%d" kept for
** the node; rf_config_path_for fills it in. */
static void test_tls(void) {
  rf_config c;
  char buf[64], want[600];
  CHECK(good("return { cluster = 'x', nodes = {" NODE1 "}, tls = { ca = "
             "'c/ca.pem', cert = '/abs/n%d.pem', key = 'k/n%d.key' } }", &c));
  snprintf(want, sizeof want, "%.*s/c/ca.pem",
           (int)(strrchr(tmp_path, '/') - tmp_path), tmp_path);
  CHECK(c.tls_ca && strcmp(c.tls_ca, want) == 0);
  CHECK(c.tls_cert && strcmp(c.tls_cert, "/abs/n%d.pem") == 0);
  CHECK(c.tls_key && strstr(c.tls_key, "/k/n%d.key") != NULL);
  CHECK(rf_config_path_for(c.tls_cert, 12, buf, sizeof buf) == 0 &&
        strcmp(buf, "/abs/n12.pem") == 0);
  CHECK(rf_config_path_for(c.tls_cert, 12, buf, 12) == -1);
  CHECK(rf_config_path_for(c.tls_cert, 12, buf, 13) == 0);
  rf_config_free(&c);
  CHECK(good("return { cluster = 'x', nodes = {" NODE1 "} }", &c));
  CHECK(c.tls_ca == NULL && c.tls_cert == NULL && c.tls_key == NULL);
  rf_config_free(&c);
  bad("return { cluster = 'x', nodes = {" NODE1 "}, tls = { ca = 'a', "
      "cert = 'b' } }", "tls.key", "missing");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, tls = { ca = 'a', "
      "cert = 'b', key = 'c', crl = 'd' } }", "tls.crl", "unknown key");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, tls = { ca = 'a', "
      "cert = 'n%s', key = 'c' } }", "tls.cert", "%d");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, tls = { ca = '', "
      "cert = 'b', key = 'c' } }", "tls.ca", "PEM file");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, tls = 'on' }", "tls",
      "expected a table");
}

static void test_unknown_and_types(void) {
  bad("return { cluster = 'x', nodes = {" NODE1 "}, foo = 1 }",
      ": foo: unknown key (expected one of: cluster, nodes");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, [1] = 2 }",
      ": [1]: unknown key");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, timing = { tick = 1 } }",
      "timing.tick: unknown key", "tick_ms");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = { body = 1 } }",
      "limits.body: unknown key", "max_body_bytes");
  bad("return { cluster = 'x', nodes = { { id = 1, peer = '127.0.0.1:1', "
      "http = '127.0.0.1:2', port = 3 } } }",
      "nodes[1].port: unknown key");
  bad("return { cluster = 'x', nodes = { x = " NODE1 " } }",
      "nodes.x: unexpected key");
  bad("return { cluster = 'x', nodes = { [1] = " NODE1 ", [3] = " NODE2
      " } }", "nodes[3]: unexpected key", "without holes");
  bad("return { cluster = 5, nodes = {" NODE1 "} }",
      ": cluster: expected a string, got number");
  bad("return { cluster = 'x', nodes = 'a' }", ": nodes: expected a list");
  bad("return { cluster = 'x', nodes = { 'a' } }",
      "nodes[1]: expected a table");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, timing = 5 }",
      ": timing: expected a table, got number");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, timing = "
      "{ tick_ms = '10' } }",
      "timing.tick_ms: expected an integer, got string");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, timing = "
      "{ pre_vote = 1 } }",
      "timing.pre_vote: expected a boolean, got number");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, storage = true }",
      ": storage: expected a string, got boolean");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, wal = { sync = 'x' } }",
      "wal.sync: must be \"always\" or \"none\", got \"x\"");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, wal = { fsync = 1 } }",
      "wal.fsync: unknown key");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ max_body_bytes = 1.5 } }",
      "limits.max_body_bytes: expected an integer, got 1.5");
}

static void test_required_and_ranges(void) {
  bad("return { nodes = {" NODE1 "} }", ": cluster: missing");
  bad("return { cluster = 'x' }", ": nodes: missing");
  bad("return { cluster = 'x', nodes = {} }",
      ": nodes: must list at least one node");
  bad("return { cluster = '', nodes = {" NODE1 "} }", ": cluster: must be");
  bad("return { cluster = 'a b', nodes = {" NODE1 "} }", ": cluster: \"a b\"");
  bad("return { cluster = 'x', nodes = { { peer = '127.0.0.1:1', "
      "http = '127.0.0.1:2' } } }",
      "nodes[1].id: missing");
  bad("return { cluster = 'x', nodes = { { id = 1, http = '127.0.0.1:2' } } }",
      "nodes[1].peer: missing");
  bad("return { cluster = 'x', nodes = { { id = 1, peer = '127.0.0.1:2' } } }",
      "nodes[1].http: missing");
  bad("return { cluster = 'x', nodes = { { id = 0, peer = '127.0.0.1:1', "
      "http = '127.0.0.1:2' } } }",
      "nodes[1].id: must be positive, got 0");
  bad("return { cluster = 'x', nodes = { { id = -3, peer = '127.0.0.1:1', "
      "http = '127.0.0.1:2' } } }",
      "nodes[1].id: must be positive, got -3");
  bad("return { cluster = 'x', nodes = { { id = 1.5, peer = '127.0.0.1:1', "
      "http = '127.0.0.1:2' } } }",
      "nodes[1].id: expected an integer, got 1.5");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, timing = "
      "{ election_ticks = 5, heartbeat_ticks = 5 } }",
      "timing.election_ticks: must be greater than timing.heartbeat_ticks "
      "(5), got 5");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, timing = "
      "{ election_ticks = 3 } }",
      "timing.election_ticks: must be greater than");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, timing = "
      "{ tick_ms = 0 } }",
      "timing.tick_ms: must be positive, got 0");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ max_body_bytes = 0 } }",
      "limits.max_body_bytes: must be positive, got 0");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ max_connections = -1 } }",
      "limits.max_connections: must be positive");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ snapshot_log_percent = -1 } }", /* 0 is allowed: none */
      "limits.snapshot_log_percent: must be between 0 and");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ idle_timeout_ms = 1 << 40 } }",
      "limits.idle_timeout_ms: must be between 1 and 2147483647");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ max_frame_bytes = 1 << 31 } }", /* issue 8: failed only at listen */
      "limits.max_frame_bytes: must be at most 1073741824 (1 GiB: a frame's "
      "length and libuv's buffers are 32-bit), got 2147483648");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ max_header_bytes = 1 << 40 } }",
      "limits.max_header_bytes: must be at most 1048576 (1 MiB)");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ snapshot_chunk_bytes = 2 << 30 } }",
      "limits.snapshot_chunk_bytes: must be at most 1073741824");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ snapshot_log_percent = 20000 } }",
      "limits.snapshot_log_percent: must be at most 10000");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ snapshot_log_bytes = 1000, snapshot_min_log_bytes = 1001 } }",
      "limits.snapshot_min_log_bytes: must be at most "
      "limits.snapshot_log_bytes = 1000");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ peer_buffer_bytes = 1 << 20 } }",
      "limits.peer_buffer_bytes: must be at least limits.max_frame_bytes + 4");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ max_peer_connections = 0 } }",
      "limits.max_peer_connections: must be positive, got 0");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ max_frame_bytes = 1000 } }",
      "limits.max_frame_bytes: must be at least limits.max_msg_bytes + 1024 "
      "= 2098176");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ max_msg_bytes = 4 << 20 } }",
      "limits.max_frame_bytes: must be at least");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ send_queue_bytes = 4 << 20 } }",
      "limits.send_queue_bytes: must be at least limits.max_frame_bytes + 4 "
      "= 4194308");
}

static void test_ids_and_addresses(void) {
  bad("return { cluster = 'x', nodes = {" NODE1 ", { id = 1, peer = "
      "'127.0.0.1:7002', http = '127.0.0.1:8002' } } }",
      ": nodes[2].id: duplicate id 1");
  bad("return { cluster = 'x', nodes = {" NODE1 ", { id = 2, peer = "
      "'127.0.0.1:7002', http = '127.0.0.1:7001' } } }",
      "nodes[2].http: address 127.0.0.1:7001 already used by nodes[1].peer");
  bad("return { cluster = 'x', nodes = {" NODE1 ", { id = 2, peer = "
      "'localhost:8001', http = '127.0.0.1:8002' } } }",
      "nodes[2].peer: address localhost:8001 already used by nodes[1].http");
  bad("return { cluster = 'x', nodes = { { id = 1, peer = '[::1]:5', "
      "http = '[0::1]:5' } } }",
      "nodes[1].http: address [0::1]:5 already used by nodes[1].peer");
  static const struct { const char *addr, *msg; } addrs[] = {
      {"127.0.0.1", "malformed address \"127.0.0.1\""},
      {"127.0.0.1:", "malformed address"},
      {":7001", "malformed address"},
      {"127.0.0.1:0", "port 0 out of range 1..65535"},
      {"127.0.0.1:70000", "port 70000 out of range"},
      {"127.0.0.1:99999999999999999999", "out of range"},
      {"127.0.0.1:7x", "malformed port"},
      {"127.0.0.1:-1", "malformed port"},
      {"example.com:80", "host \"example.com\" must be a numeric IPv4"},
      {"300.1.1.1:80", "must be a numeric IPv4"},
      {"::1:7001", "write IPv6 as [::1]:7001"},
      {"[::1]", "malformed address"},
      {"[::1:7001", "malformed address"},
      {"[127.0.0.1]:7001", "must be a numeric IPv6"},
  };
  for (size_t i = 0; i < sizeof addrs / sizeof *addrs; i++) {
    char src[256];
    snprintf(src, sizeof src, "return { cluster = 'x', nodes = { { id = 1, "
             "peer = '%s', http = '127.0.0.1:2' } } }", addrs[i].addr);
    bad(src, "nodes[1].peer: ", addrs[i].msg);
  }
}

static void test_storage(void) {
  bad("return { cluster = 'x', nodes = {" NODE1 "}, storage = '' }",
      ": storage: must be");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, storage = '/d/%s' }",
      ": storage: \"/d/%s\": only \"%d\"");
  bad("return { cluster = 'x', nodes = {" NODE1 "," NODE2 "}, "
      "storage = '/d/wal' }",
      ": storage: \"/d/wal\" would be shared");
  rf_config c;
  if (good("return { cluster = 'x', nodes = {" NODE1 "}, storage = '/d' }",
           &c))
    rf_config_free(&c);
  else
    failures++;
}

/* log = { level, format }: defaults, values, clear errors. */
static void test_log(void) {
  rf_config c;
  if (good("return { cluster = 'x', nodes = {" NODE1 "} }", &c)) {
    CHECK(c.log_level == RF_INFO && c.log_format == RF_LOG_TEXT);
    rf_config_free(&c);
  } else {
    failures++;
  }
  if (good("return { cluster = 'x', nodes = {" NODE1 "}, "
           "log = { level = 'debug', format = 'json' } }", &c)) {
    CHECK(c.log_level == RF_DEBUG && c.log_format == RF_LOG_JSON);
    rf_config_free(&c);
  } else {
    failures++;
  }
  bad("return { cluster = 'x', nodes = {" NODE1 "}, log = { format = 'xml' } }",
      ": log.format: must be \"text\" or \"json\", got \"xml\"");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, log = { level = 'loud' } }",
      ": log.level: must be \"debug\", \"info\", \"warn\" or \"error\", "
      "got \"loud\"");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, log = { level = 3 } }",
      ": log.level: expected a string, got number");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, log = 'json' }",
      ": log: expected a table, got string");
  bad("return { cluster = 'x', nodes = {" NODE1 "}, log = { fmt = 'json' } }",
      ": log.fmt: unknown key (expected one of: level, format)");
}

/* Errors raised by the chunk itself carry its line; no io/os/require. */
static void test_lua_errors(void) {
  char err[1024];
  rf_config c;
  bad("return 5", ": must return a table, got number");
  bad("local x = 1\nerror('boom')\n", ":2: boom", "stack traceback");
  bad("local x = 1\nreturn {\n  cluster = 'x',,\n}\n", ":3: ");
  bad("local t = nil\n\nreturn t.x\n", ":3: attempt to index");
  bad("return io.open('/etc/passwd')", ":1: ", "'io'");
  bad("return os.exit(1)", ":1: ", "'os'");
  bad("return require('x')", ":1: ", "'require'");
  bad("return dofile('/etc/passwd')", ":1: ", "'dofile'");
  bad("return loadfile('/etc/passwd')", ":1: ", "'loadfile'");
  bad("error({})", "(error object is a table value)");
  bad("while true do end", ":1: config still running", "endless loop");
  /* library work is charged to the same budget: these fail at once */
  bad("local s = string.rep('', 1e12)\nreturn {}", ":1: config still running");
  bad("\nreturn ('a'):rep(300):find('.-.-.-b')", ":2: config still running");
  bad("return table.move({}, 1, math.maxinteger, 1)", ":1: config still running");
  bad("return table.concat({}, '', 1, 1e12)", ":1: config still running");
  bad("local n = 0\nload(function() n = n + 1\n"
      "  if n == 1 then return ('x'):rep(3e7) end end)\nreturn {}",
      "config still running");
  bad("local s = ('x'):rep(1 << 30) return {}", "more than 64 MiB");
  bad("local t = {'x'} for i = 1, 40 do t[1] = t[1] .. t[1] end",
      "more than 64 MiB");
  /* a refusal the config caught itself is not its error */
  bad("pcall(string.rep, 'x', 1 << 30) error('mine')", ":1: mine");
  write_tmp("\x1bLua\x54\x00garbage", 12);
  CHECK(rf_config_load(tmp_path, &c, err, sizeof err) == -1);
  CHECK(strstr(err, "binary chunk") != NULL);
  unlink(tmp_path);
  CHECK(rf_config_load("/nonexistent/x.lua", &c, err, sizeof err) == -1);
  CHECK(strstr(err, "cannot open /nonexistent/x.lua") != NULL);
  /* A tiny buffer truncates, never overflows. */
  char small[8];
  CHECK(rf_config_load("/nonexistent/x.lua", &c, small, sizeof small) == -1);
  CHECK(strlen(small) == 7);
}

/* 0 means none for the snapshot ceilings, the amortized trigger and the
** held-loop warning. */
static void test_zero_limits(void) {
  rf_config c;
  CHECK(good("return { cluster = 'x', nodes = {" NODE1 "}, limits = { "
             "snapshot_log_percent = 0, snapshot_entries = 0, "
             "snapshot_log_bytes = 0, max_inflight_bytes = 1, "
             "loop_warn_ms = 0 } }", &c));
  CHECK(c.snapshot_log_percent == 0 && c.snapshot_entries == 0 &&
        c.snapshot_log_bytes == 0 && c.max_inflight_bytes == 1 &&
        c.loop_warn_ms == 0);
  rf_config_free(&c);
  bad("return { cluster = 'x', nodes = {" NODE1 "}, limits = "
      "{ max_inflight_bytes = 0 } }",
      "limits.max_inflight_bytes: must be positive, got 0");
}

int main(void) {
  test_defaults();
  test_zero_limits();
  test_overrides();
  test_shipped();
  test_commands();
  test_tls();
  test_unknown_and_types();
  test_required_and_ranges();
  test_ids_and_addresses();
  test_storage();
  test_log();
  test_lua_errors();
  return check_summary("test_config");
}
