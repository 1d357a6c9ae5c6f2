/*
** test_transport.c -- the peer transport on loopback, on one uv loop.
**
** Nodes 1 and 2 start; node 3 is down.  The test walks through phases,
** each waiting (polled by a 2 ms timer, bounded by a 5 s deadline) for a
** condition before acting:
**   every message type with entries round-trips 1->2 and 2->1;
**   node 3 comes up and gets connected (reconnect from backoff), goes down,
**   comes back and gets reconnected;
**   raw TCP clients send garbage, an oversize length, another cluster's
**   frame, a frame for another node and one from an unknown node: each is
**   closed (with a log line) while a raw client sending a valid frame in
**   pieces is served, and node 1 -> 2 still works; so are a client that
**   never sends (first-frame deadline) and one that sends a hello and part
**   of a frame (frame deadline), while the nodes' own connections, which
**   open with a hello and then idle, stay up;
**   node 1 floods node 4, a server that accepts and never reads: sends are
**   dropped at the queue bound instead of queuing without bound;
**   everything closes and uv_run() returns with no handle left; so does a
**   transport closed while dialing or while waiting to redial.
** Exits non-zero and names every failed check; set RF_TEST_VERBOSE=1 to see
** the transports' log lines.
*/
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rafting/codec.h"
#include "rafting/transport.h"

#include "check.h"
#include "raftmsg.h"

#define CLUSTER "test-cluster"
#define MAX_FRAME (256u << 10)
#define QUEUE (512u << 10)
#define PHASE_MS 5000
#define DEADLINE_MS 300 /* inbound first-frame and frame deadlines */
#define MAX_KEEP 64

static int verbose;

#define CHECK_RC(got, want) \
  CHECK_STATUS(got, want, rf_transport_strerror)

/* ---- nodes ---------------------------------------------------------- */

typedef struct node {
  uint64_t id;
  rf_transport *t;
  rf_transport_config cfg;
  rf_peer_addr peers[3];
  raft_msg got[MAX_KEEP]; /* deep copies of what recv saw */
  size_t n_got;
  int ups[5], downs[5];   /* peer_state calls per peer */
  int closes_logged;      /* "closing peer connection" warnings */
  int done;               /* close callbacks that ran */
} node;

static uv_loop_t *loop;
static node nodes[4]; /* nodes[1..3] */
static int ports[5];  /* ports[1..3] nodes, ports[4] the sink */

static raft_msg copy_msg(const raft_msg *m) {
  raft_msg c = *m;
  raft_entry *es = NULL;
  if (m->n_entries) es = calloc(m->n_entries, sizeof(*es));
  for (size_t i = 0; i < m->n_entries; i++) {
    es[i] = m->entries[i];
    es[i].data = NULL;
    if (es[i].len) {
      uint8_t *d = malloc(es[i].len);
      memcpy(d, m->entries[i].data, es[i].len);
      es[i].data = d;
    }
  }
  c.entries = es;
  return c;
}

static void free_msg(raft_msg *m) {
  for (size_t i = 0; i < m->n_entries; i++) free((void *)m->entries[i].data);
  free((void *)m->entries);
  memset(m, 0, sizeof(*m));
}

static void on_recv(void *ud, const raft_msg *m) {
  node *n = ud;
  CHECK(m->to == n->id);
  if (n->n_got < MAX_KEEP) n->got[n->n_got] = copy_msg(m);
  n->n_got++;
}

static void on_peer_state(void *ud, uint64_t peer, int up) {
  node *n = ud;
  if (peer < 5) (up ? n->ups : n->downs)[peer]++;
}

static void on_log(void *ud, int level, const char *msg) {
  node *n = ud;
  if (level == RF_LOG_WARN && strstr(msg, "closing peer connection"))
    n->closes_logged++;
  if (verbose) fprintf(stderr, "[node %d] %d %s\n", (int)n->id, level, msg);
}

static void on_closed(void *ud) { ((node *)ud)->done++; }

static void setup_node(uint64_t id) {
  node *n = &nodes[id];
  size_t k = 0;
  n->id = id;
  for (uint64_t p = 1; p <= 4; p++) {
    if (p == id || (p == 4 && id != 1)) continue; /* only 1 knows the sink */
    n->peers[k++] = (rf_peer_addr){p, "127.0.0.1", ports[p]};
  }
  n->cfg = (rf_transport_config){
    .cluster = CLUSTER, .self = id, .listen_host = "127.0.0.1",
    .listen_port = ports[id], .peers = n->peers, .n_peers = k,
    .max_frame_bytes = MAX_FRAME, .send_queue_bytes = QUEUE,
    .backoff_min_ms = 5, .backoff_max_ms = 40, .seed = id,
    .first_frame_ms = DEADLINE_MS, .frame_ms = DEADLINE_MS, .ud = n,
    .recv = on_recv, .peer_state = on_peer_state, .log = on_log};
}

static void start_node(uint64_t id) {
  int rc = rf_transport_start(loop, &nodes[id].cfg, &nodes[id].t);
  CHECK_RC(rc, 0);
  if (rc < 0) exit(1);
  CHECK(rf_transport_port(nodes[id].t) == ports[id]);
}

/* Free ports: bind three sockets to port 0 at once, note, close. */
static void pick_ports(void) {
  int fds[3];
  for (int i = 0; i < 3; i++) {
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fds[i], (struct sockaddr *)&a, &len) < 0) {
      perror("pick_ports");
      exit(1);
    }
    ports[i + 1] = ntohs(a.sin_port);
  }
  for (int i = 0; i < 3; i++) close(fds[i]);
}

/* ---- messages ------------------------------------------------------- */

static const raft_entry ents[3] = {
  {7, 11, RAFT_ENTRY_NORMAL, 5, (const uint8_t *)"a\0b\0c"},
  {7, 12, RAFT_ENTRY_NOOP, 0, NULL},
  {8, 13, RAFT_ENTRY_CONF, 3, (const uint8_t *)"xyz"},
};
static raft_entry big_ents[201];
static uint8_t big_data[100000];

static const raft_msg msgs[] = {
  {.type = RAFT_MSG_PREVOTE, .term = 9, .index = 12, .log_term = 7},
  {.type = RAFT_MSG_PREVOTE_RESP, .term = 9, .reject = 1},
  {.type = RAFT_MSG_VOTE, .term = 9, .index = 12, .log_term = 7},
  {.type = RAFT_MSG_VOTE_RESP, .term = 9},
  {.type = RAFT_MSG_APPEND, .term = 8, .index = 10, .log_term = 6,
   .commit = 9, .n_entries = 3, .entries = ents},
  {.type = RAFT_MSG_APPEND, .term = 8, .index = 13, .log_term = 8,
   .commit = 13},
  {.type = RAFT_MSG_APPEND_RESP, .term = 8, .reject = 1, .index = 10,
   .hint_index = 8, .hint_term = 5},
  {.type = RAFT_MSG_APPEND_RESP, .term = 8, .index = 13},
  {.type = RAFT_MSG_HEARTBEAT, .term = 8, .commit = 13, .context = 99},
  {.type = RAFT_MSG_HEARTBEAT_RESP, .term = 8, .context = 99},
  {.type = RAFT_MSG_SNAPSHOT, .term = 8, .index = 100, .log_term = 8},
  {.type = RAFT_MSG_SNAPSHOT_RESP, .term = 8, .reject = 1, .index = 100},
  {.type = RAFT_MSG_TIMEOUT_NOW, .term = 8},
  {.type = RAFT_MSG_APPEND, .term = 8, .index = 13, .log_term = 8,
   .commit = 13, .n_entries = 201, .entries = big_ents},
};
#define N_MSGS (sizeof(msgs) / sizeof(msgs[0]))

/* 200 small entries of varied bytes, then one of 100000 bytes. */
static void make_big_append(void) {
  for (size_t i = 0; i < sizeof(big_data); i++)
    big_data[i] = (uint8_t)(i * 31 + 7);
  for (int i = 0; i < 201; i++)
    big_ents[i] = (raft_entry){8, 14 + (uint64_t)i, i % 3,
                               i < 200 ? (size_t)(i % 50) : sizeof(big_data),
                               i < 200 ? big_data + i : big_data};
}

static raft_msg addressed(const raft_msg *m, uint64_t from, uint64_t to) {
  raft_msg c = *m;
  c.from = from;
  c.to = to;
  return c;
}

static raft_msg heartbeat(uint64_t from, uint64_t to, uint64_t ctx) {
  raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = from, .to = to,
                .term = 1, .context = ctx};
  return m;
}

static void send_all(uint64_t from, uint64_t to) {
  for (size_t i = 0; i < N_MSGS; i++) {
    raft_msg m = addressed(&msgs[i], from, to);
    CHECK_RC(rf_transport_send(nodes[from].t, &m), 0);
  }
}

static void check_all(uint64_t from, uint64_t to) {
  node *n = &nodes[to];
  CHECK(n->n_got == N_MSGS);
  for (size_t i = 0; i < N_MSGS && i < n->n_got; i++) {
    raft_msg m = addressed(&msgs[i], from, to);
    if (!msg_equal(&m, &n->got[i])) {
      fprintf(stderr, "FAIL message %zu (type %d) %d->%d did not round-trip\n",
              i, (int)m.type, (int)from, (int)to);
      failures++;
    }
  }
}

static void forget(node *n) {
  for (size_t i = 0; i < n->n_got && i < MAX_KEEP; i++) free_msg(&n->got[i]);
  n->n_got = 0;
}

/* Did node n receive a heartbeat with context ctx? */
static int got_context(node *n, uint64_t ctx) {
  for (size_t i = 0; i < n->n_got && i < MAX_KEEP; i++)
    if (n->got[i].type == RAFT_MSG_HEARTBEAT && n->got[i].context == ctx)
      return 1;
  return 0;
}

/* ---- raw TCP clients (bad peers) ------------------------------------ */

typedef struct raw {
  uv_tcp_t tcp;
  uv_connect_t req;
  uv_timer_t later;      /* writes the second half of a split frame */
  const char *what;
  uint8_t *bytes;
  size_t len, split;     /* write [0, split) now, the rest after 20 ms */
  int closed_by_peer;
} raw;

enum { RAW_GARBAGE, RAW_OVERSIZE, RAW_SILENT, RAW_SLOW, RAW_CLUSTER,
       RAW_RECIPIENT, RAW_SENDER, RAW_GOOD, N_RAW };
static raw raws[N_RAW];

static void raw_written(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

static void raw_write(raw *r, size_t from, size_t to) {
  uv_write_t *w = malloc(sizeof(*w));
  uv_buf_t b = uv_buf_init((char *)r->bytes + from, (unsigned)(to - from));
  if (uv_write(w, (uv_stream_t *)&r->tcp, &b, 1, raw_written) < 0) free(w);
}

static void raw_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  static char sink[256];
  (void)h;
  (void)size;
  *buf = uv_buf_init(sink, sizeof(sink));
}

static void raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  raw *r = s->data;
  (void)buf;
  if (nread < 0) {
    r->closed_by_peer = 1;
    uv_read_stop(s);
  }
}

static void raw_later(uv_timer_t *timer) {
  raw *r = timer->data;
  raw_write(r, r->split, r->len);
}

static void raw_connected(uv_connect_t *req, int status) {
  raw *r = req->data;
  CHECK_RC(status, 0);
  if (status < 0) return;
  if (r->split > 0) raw_write(r, 0, r->split);
  if (r->split < r->len) uv_timer_start(&r->later, raw_later, 20, 0);
  uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
}

static void raw_start(raw *r, const char *what, uint8_t *bytes, size_t len,
                      size_t split) {
  struct sockaddr_in a;
  r->what = what;
  r->bytes = bytes;
  r->len = len;
  r->split = split;
  uv_tcp_init(loop, &r->tcp);
  uv_timer_init(loop, &r->later);
  r->tcp.data = r->req.data = r->later.data = r;
  uv_ip4_addr("127.0.0.1", ports[2], &a);
  CHECK_RC(uv_tcp_connect(&r->req, &r->tcp, (struct sockaddr *)&a,
                          raw_connected), 0);
}

static uint8_t *encoded(const char *cluster, raft_msg m, size_t *len) {
  uint8_t *buf = NULL;
  CHECK_RC(rf_codec_encode(cluster, &m, &buf, len), 0);
  return buf;
}

/* Two frames in one buffer, to be written in two pieces. */
static uint8_t *two_frames(size_t *len) {
  size_t l1, l2;
  uint8_t *f1 = encoded(CLUSTER, heartbeat(1, 2, 4242), &l1);
  uint8_t *f2 = encoded(CLUSTER, heartbeat(3, 2, 4243), &l2);
  uint8_t *b = malloc(l1 + l2);
  memcpy(b, f1, l1);
  memcpy(b + l1, f2, l2);
  free(f1);
  free(f2);
  *len = l1 + l2;
  return b;
}

static void start_raws(void) {
  static uint8_t garbage[4 + 16], oversize[8], slow[4 + 4 + 3];
  size_t len;
  uint8_t *b;
  rf_frame_put_len(garbage, 16);
  memset(garbage + 4, 0xff, 16);
  rf_frame_put_len(oversize, 0x7fffffff);
  memcpy(oversize + 4, "abcd", 4);
  raw_start(&raws[RAW_GARBAGE], "garbage", garbage, sizeof(garbage),
            sizeof(garbage));
  raw_start(&raws[RAW_OVERSIZE], "oversize", oversize, sizeof(oversize),
            sizeof(oversize));
  raw_start(&raws[RAW_SILENT], "silent", NULL, 0, 0);
  rf_frame_put_len(slow, 0); /* a hello, then 3 bytes of a 100-byte frame */
  rf_frame_put_len(slow + 4, 100);
  raw_start(&raws[RAW_SLOW], "slow", slow, sizeof(slow), sizeof(slow));
  b = encoded("other-cluster", heartbeat(1, 2, 1), &len);
  raw_start(&raws[RAW_CLUSTER], "wrong cluster", b, len, len);
  b = encoded(CLUSTER, heartbeat(1, 3, 1), &len);
  raw_start(&raws[RAW_RECIPIENT], "wrong recipient", b, len, len);
  b = encoded(CLUSTER, heartbeat(9, 2, 1), &len);
  raw_start(&raws[RAW_SENDER], "unknown sender", b, len, len);
  b = two_frames(&len);
  raw_start(&raws[RAW_GOOD], "good", b, len, 3); /* split inside a header */
}

/* ---- the sink: node 4 accepts and never reads ----------------------- */

static uv_tcp_t sink, sink_conn;
static int sink_accepted;

static void sink_connection(uv_stream_t *server, int status) {
  CHECK_RC(status, 0);
  CHECK(!sink_accepted); /* node 1 never needed to redial */
  if (status < 0 || sink_accepted) return;
  uv_tcp_init(loop, &sink_conn);
  CHECK_RC(uv_accept(server, (uv_stream_t *)&sink_conn), 0);
  sink_accepted = 1;
}

static void start_sink(void) {
  struct sockaddr_in a;
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  uv_tcp_init(loop, &sink);
  uv_ip4_addr("127.0.0.1", 0, &a);
  CHECK_RC(uv_tcp_bind(&sink, (struct sockaddr *)&a, 0), 0);
  CHECK_RC(uv_listen((uv_stream_t *)&sink, 16, sink_connection), 0);
  uv_tcp_getsockname(&sink, (struct sockaddr *)&ss, &len);
  ports[4] = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Flood 1 -> 4 each tick; the queue must stay bounded. */
static uv_timer_t flood_timer;
static raft_entry flood_ent = {1, 1, RAFT_ENTRY_NORMAL, 16384, big_data};
static size_t flood_offered, flood_ok, flood_full, flood_max_queued;

static void flood(uv_timer_t *timer) {
  raft_msg m = {.type = RAFT_MSG_APPEND, .from = 1, .to = 4, .term = 1,
                .n_entries = 1, .entries = &flood_ent};
  rf_peer_info info;
  (void)timer;
  for (int i = 0; i < 16; i++) {
    int rc = rf_transport_send(nodes[1].t, &m);
    flood_offered += flood_ent.len;
    if (rc == 0) flood_ok++;
    else if (rc == RF_TRANSPORT_EFULL) flood_full++;
    else CHECK_RC(rc, 0);
    rf_transport_peer_info(nodes[1].t, 4, &info);
    if (info.queued_bytes > flood_max_queued)
      flood_max_queued = info.queued_bytes;
  }
}

/* Errors a send must report without touching the network. */
static void check_send_errors(void) {
  raft_msg m = heartbeat(1, 2, 0);
  CHECK_RC(rf_transport_send(nodes[1].t, &m), RF_TRANSPORT_EDOWN);
  m.to = 9;
  CHECK_RC(rf_transport_send(nodes[1].t, &m), RF_TRANSPORT_ENOPEER);
  m.to = 2;
  m.from = 3; /* not this node */
  CHECK_RC(rf_transport_send(nodes[1].t, &m), UV_EINVAL);
}

/* Once connected: a frame over max_frame_bytes is refused, not sent. */
static void check_too_big(void) {
  raft_entry huge = {1, 1, RAFT_ENTRY_NORMAL, MAX_FRAME + 1, NULL};
  raft_msg m = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 1,
                .n_entries = 1, .entries = &huge};
  uint8_t *mem = calloc(1, huge.len);
  huge.data = mem;
  CHECK_RC(rf_transport_send(nodes[1].t, &m), RF_TRANSPORT_ETOOBIG);
  free(mem);
}

/* ---- phases --------------------------------------------------------- */

static uv_timer_t step_timer;
static int phase;
static uint64_t phase_start;

static int all_raws_done(void) {
  for (int i = 0; i < N_RAW; i++)
    if (i != RAW_GOOD && !raws[i].closed_by_peer) return 0;
  return got_context(&nodes[2], 4242) && got_context(&nodes[2], 4243);
}

static void raw_closed(uv_handle_t *h) { (void)h; }

static void close_all(void) {
  for (uint64_t id = 1; id <= 3; id++)
    CHECK_RC(rf_transport_close(nodes[id].t, on_closed, &nodes[id]), 0);
  CHECK_RC(rf_transport_close(nodes[1].t, on_closed, &nodes[1]),
           RF_TRANSPORT_ECLOSING);
  for (int i = 0; i < N_RAW; i++) {
    uv_close((uv_handle_t *)&raws[i].tcp, raw_closed);
    uv_close((uv_handle_t *)&raws[i].later, raw_closed);
  }
  uv_close((uv_handle_t *)&sink, raw_closed);
  if (sink_accepted) uv_close((uv_handle_t *)&sink_conn, raw_closed);
  uv_close((uv_handle_t *)&flood_timer, raw_closed);
}

/* Each case: wait for its condition, then act and move on. */
static int step(void) {
  node *n1 = &nodes[1], *n2 = &nodes[2], *n3 = &nodes[3];
  raft_msg hb;
  switch (phase) {
  case 0: /* 1 and 2 (and the sink) connect */
    if (!(n1->ups[2] && n2->ups[1] && rf_transport_connected(n1->t, 4)))
      return 0;
    CHECK(rf_transport_connected(n1->t, 2) && rf_transport_connected(n2->t, 1));
    CHECK(!rf_transport_connected(n1->t, 3));
    hb = heartbeat(1, 3, 1);
    CHECK_RC(rf_transport_send(n1->t, &hb), RF_TRANSPORT_EDOWN);
    check_too_big();
    send_all(1, 2);
    send_all(2, 1);
    return 1;
  case 1: /* every type round-trips both ways */
    if (n1->n_got < N_MSGS || n2->n_got < N_MSGS) return 0;
    check_all(1, 2);
    check_all(2, 1);
    forget(n1);
    forget(n2);
    start_node(3); /* 1 and 2 have been redialing it */
    return 1;
  case 2: /* 3 is connected from both sides */
    if (!(n1->ups[3] && n2->ups[3] && n3->ups[1] && n3->ups[2])) return 0;
    hb = heartbeat(1, 3, 31);
    CHECK_RC(rf_transport_send(n1->t, &hb), 0);
    hb = heartbeat(3, 1, 13);
    CHECK_RC(rf_transport_send(n3->t, &hb), 0);
    return 1;
  case 3:
    if (!(got_context(n3, 31) && got_context(n1, 13))) return 0;
    forget(n1);
    forget(n3);
    CHECK_RC(rf_transport_close(n3->t, on_closed, n3), 0);
    return 1;
  case 4: /* 3 went down: both notice */
    if (!(n3->done && n1->downs[3] && n2->downs[3])) return 0;
    CHECK(!rf_transport_connected(n1->t, 3));
    n3->done = 0;
    memset(n3->ups, 0, sizeof(n3->ups));
    start_node(3);
    return 1;
  case 5: /* ... and comes back */
    if (!(n1->ups[3] == 2 && n2->ups[3] == 2 && n3->ups[1] && n3->ups[2]))
      return 0;
    start_raws();
    return 1;
  case 6: /* bad clients are closed, the good one is served */
    if (!all_raws_done()) return 0;
    CHECK(!raws[RAW_GOOD].closed_by_peer);
    CHECK(n2->closes_logged == N_RAW - 1);
    hb = heartbeat(1, 2, 777);
    CHECK_RC(rf_transport_send(n1->t, &hb), 0);
    return 1;
  case 7: /* and node 2 still hears node 1 */
    if (!got_context(n2, 777)) return 0;
    CHECK(rf_transport_connected(n2->t, 1) && rf_transport_connected(n1->t, 2));
    uv_timer_start(&flood_timer, flood, 0, 1);
    return 1;
  case 8: /* the flood is dropped at the bound */
    if (flood_offered < (32u << 20)) return 0;
    uv_timer_stop(&flood_timer);
    if (verbose)
      fprintf(stderr, "flood: offered %zu bytes, %zu frames queued, %zu "
              "dropped full, max queued %zu\n", flood_offered, flood_ok,
              flood_full, flood_max_queued);
    CHECK(flood_full > 0);
    CHECK(flood_max_queued <= QUEUE);
    CHECK(flood_ok * flood_ent.len < flood_offered);
    {
      rf_peer_info info;
      CHECK_RC(rf_transport_peer_info(n1->t, 4, &info), 0);
      CHECK(info.connected && info.dropped == flood_full);
      CHECK(info.sent == flood_ok);
    }
    close_all();
    return 1;
  case 9:
    if (!(n1->done && n2->done && n3->done)) return 0;
    CHECK(n1->done == 1 && n2->done == 1 && n3->done == 1);
    uv_close((uv_handle_t *)&step_timer, NULL);
    return 1;
  default:
    return 0;
  }
}

static void on_step(uv_timer_t *timer) {
  (void)timer;
  if (step()) {
    phase++;
    phase_start = uv_now(loop);
  } else if (uv_now(loop) - phase_start > PHASE_MS) {
    fprintf(stderr, "FAIL phase %d: condition not met within %d ms\n", phase,
            PHASE_MS);
    exit(1);
  }
}

/* Close with a dial in flight (at once) and with a redial pending (after
** 50 ms of refused dials): both drain and call done. */
static node lone[2];
static uv_timer_t lone_timer;

static void lone_close(uv_timer_t *timer) {
  CHECK_RC(rf_transport_close(lone[1].t, on_closed, &lone[1]), 0);
  uv_close((uv_handle_t *)timer, NULL);
}

static void check_close_while_dialing(void) {
  rf_peer_addr down = {2, "127.0.0.1", ports[3]}; /* node 3 is gone */
  for (int i = 0; i < 2; i++) {
    lone[i].id = 1;
    lone[i].cfg = nodes[1].cfg;
    lone[i].cfg.ud = &lone[i];
    lone[i].cfg.listen_port = 0;
    lone[i].cfg.peers = &down;
    lone[i].cfg.n_peers = 1;
    CHECK_RC(rf_transport_start(loop, &lone[i].cfg, &lone[i].t), 0);
  }
  CHECK_RC(rf_transport_close(lone[0].t, on_closed, &lone[0]), 0);
  uv_timer_init(loop, &lone_timer);
  uv_timer_start(&lone_timer, lone_close, 50, 0);
  CHECK_RC(uv_run(loop, UV_RUN_DEFAULT), 0);
  CHECK(lone[0].done == 1 && lone[1].done == 1);
  CHECK(lone[1].ups[2] == 0 && lone[1].downs[2] == 0);
}

static void check_bad_configs(void) {
  rf_transport_config c = nodes[1].cfg;
  rf_peer_addr dup[2] = {{2, "127.0.0.1", 1}, {2, "127.0.0.1", 2}};
  rf_peer_addr bad_host[1] = {{2, "not-an-address", 1}};
  rf_transport *t = (rf_transport *)&c;
  c.cluster = "";
  CHECK_RC(rf_transport_start(loop, &c, &t), UV_EINVAL);
  CHECK(t == NULL);
  c = nodes[1].cfg;
  c.peers = dup;
  c.n_peers = 2;
  CHECK_RC(rf_transport_start(loop, &c, &t), UV_EINVAL);
  c.peers = bad_host;
  c.n_peers = 1;
  CHECK_RC(rf_transport_start(loop, &c, &t), UV_EINVAL);
  c = nodes[1].cfg;
  c.send_queue_bytes = MAX_FRAME; /* cannot hold one max frame */
  CHECK_RC(rf_transport_start(loop, &c, &t), UV_EINVAL);
  c = nodes[1].cfg;
  c.listen_port = ports[4]; /* taken by the sink */
  CHECK_RC(rf_transport_start(loop, &c, &t), UV_EADDRINUSE);
  CHECK(t == NULL);
}

int main(void) {
  verbose = getenv("RF_TEST_VERBOSE") != NULL;
  loop = uv_default_loop();
  make_big_append();
  pick_ports();
  start_sink();
  for (uint64_t id = 1; id <= 3; id++) setup_node(id);
  check_bad_configs();
  start_node(1);
  start_node(2);
  check_send_errors();
  uv_timer_init(loop, &flood_timer);
  uv_timer_init(loop, &step_timer);
  phase_start = uv_now(loop);
  uv_timer_start(&step_timer, on_step, 2, 2);

  CHECK_RC(uv_run(loop, UV_RUN_DEFAULT), 0);
  CHECK(phase == 10);
  check_close_while_dialing();
  CHECK_RC(uv_loop_close(loop), 0); /* no handle left behind */
  forget(&nodes[1]);
  forget(&nodes[2]);
  forget(&nodes[3]);
  for (int i = RAW_CLUSTER; i < N_RAW; i++) free(raws[i].bytes);
  return check_summary("test_transport");
}
