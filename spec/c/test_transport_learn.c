/*
** test_transport_learn.c -- peers that come and go (membership changes):
** the hello frame names the dialer and its listen address, a node learns an
** address it lacks (a joining node dialed by the leader answers it), never
** replaces one it has, a legacy (empty) hello teaches nothing, and
** rf_transport_add_peer/remove_peer change who it talks to while running.  Real sockets on 127.0.0.1.
*/
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "rafting/codec.h"
#include "rafting/transport.h"

#include "check.h"

#define CLUSTER "learn"
#define WAIT_MS 5000

typedef struct node {
  uint64_t id;
  rf_transport *t;
  rf_transport_config cfg;
  rf_peer_addr peers[2];
  char advertise[64];
  int learns[8], learnt_port[8]; /* learn calls per id, last port */
  int adopt;                     /* learn adds the peer */
  int got[8];                    /* heartbeats received per sender */
  int ups[8], downs[8];
  int closes;                    /* inbound connections closed with a warning */
  int done;
} node;

static uv_loop_t *loop;
static uv_timer_t tick;
static node nodes[5]; /* 1 a leader, 3 a member 4 knows, 4 joins */
static int ports[5];

static void on_recv(void *ud, const raft_msg *m) {
  node *n = ud;
  if (m->from < 8) n->got[m->from]++;
}

static void on_state(void *ud, uint64_t peer, int up) {
  node *n = ud;
  if (peer < 8) (up ? n->ups : n->downs)[peer]++;
}

static void on_log(void *ud, int level, const char *msg) {
  node *n = ud;
  if (level == RF_LOG_WARN && strstr(msg, "closing peer connection"))
    n->closes++;
  if (getenv("VERBOSE")) fprintf(stderr, "[%d] %s\n", (int)n->id, msg);
}

static void on_learn(void *ud, uint64_t id, const char *host, int port) {
  node *n = ud;
  if (id >= 8) return;
  n->learns[id]++;
  n->learnt_port[id] = port;
  if (n->adopt) CHECK(rf_transport_add_peer(n->t, id, host, port) == 0);
}

static void on_closed(void *ud) { ((node *)ud)->done++; }

static void pick_ports(void) {
  int fds[5];
  for (int i = 1; i < 5; i++) {
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fds[i], (struct sockaddr *)&a, &len) < 0) {
      perror("pick_ports");
      exit(1);
    }
    ports[i] = ntohs(a.sin_port);
  }
  for (int i = 1; i < 5; i++) close(fds[i]);
}

/* advertise_port 0: the node's own port */
static void start(uint64_t id, const uint64_t *peers, size_t np,
                  int advertise_port) {
  node *n = &nodes[id];
  n->id = id;
  for (size_t i = 0; i < np; i++)
    n->peers[i] = (rf_peer_addr){peers[i], "127.0.0.1", ports[peers[i]]};
  snprintf(n->advertise, sizeof(n->advertise), "127.0.0.1:%d",
           advertise_port ? advertise_port : ports[id]);
  n->cfg = (rf_transport_config){
    .cluster = CLUSTER, .self = id, .listen_host = "127.0.0.1",
    .listen_port = ports[id], .peers = n->peers, .n_peers = np,
    .backoff_min_ms = 5, .backoff_max_ms = 40, .seed = id, .ud = n,
    .recv = on_recv, .peer_state = on_state, .log = on_log,
    .learn = on_learn, .advertise = n->advertise};
  if (rf_transport_start(loop, &n->cfg, &n->t) < 0) {
    fprintf(stderr, "cannot start node %d\n", (int)id);
    exit(1);
  }
}

static int beat(uint64_t from, uint64_t to) {
  raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = from, .to = to, .term = 1};
  return rf_transport_send(nodes[from].t, &m);
}

static void test_codec(void) {
  uint8_t *f;
  size_t len;
  rf_decoded d;
  CHECK(rf_codec_encode_hello(CLUSTER, 4, 1, "[::1]:7004", &f, &len) == 0);
  CHECK(rf_frame_len(f) == len - RF_FRAME_HEADER);
  CHECK(rf_codec_decode(f + RF_FRAME_HEADER, len - RF_FRAME_HEADER, CLUSTER,
                        &d) == 0);
  CHECK(d.hello && strcmp(d.hello, "[::1]:7004") == 0);
  CHECK(d.msg.from == 4 && d.msg.to == 1 && d.msg.type == 0);
  rf_decoded_free(&d);
  CHECK(rf_codec_decode(f + RF_FRAME_HEADER, len - RF_FRAME_HEADER, "other",
                        &d) == RF_CODEC_ECLUSTER);
  free(f);
  CHECK(rf_codec_encode_hello(CLUSTER, 0, 1, "", &f, &len) == RF_CODEC_ERANGE);
}

int main(void) {
  uint64_t p1[] = {4}, p3[] = {4}, p4[] = {3};
  uv_loop_t l;
  test_codec();
  uv_loop_init(&l);
  loop = &l;
  uv_timer_init(loop, &tick);
  pick_ports();
  /* 4 joins: it knows only 3; 1 (the leader) knows 4 and dials it */
  nodes[4].adopt = 1;
  start(4, p4, 1, 0);
  start(1, p1, 1, 0);
  /* 3 says a wrong port in its hello: 4 knows 3 already, nothing changes */
  start(3, p3, 1, 9);
  CHECK_WAIT(loop, &tick, nodes[4].ups[1] && nodes[1].ups[4] &&
             nodes[4].ups[3] && nodes[3].ups[4], WAIT_MS);
  CHECK(nodes[4].learns[1] == 1 && nodes[4].learnt_port[1] == ports[1]);
  CHECK(nodes[4].learns[3] == 0); /* a known address is never replaced */
  CHECK(rf_transport_connected(nodes[4].t, 1));
  CHECK(nodes[1].learns[4] == 0);
  /* both ways now */
  CHECK(beat(4, 1) == 0 && beat(1, 4) == 0 && beat(4, 3) == 0);
  CHECK_WAIT(loop, &tick, nodes[1].got[4] && nodes[4].got[1] &&
             nodes[3].got[4], WAIT_MS);
  CHECK(nodes[1].got[4] == 1 && nodes[4].got[1] == 1);
  /* 3 sends to a node it was never given: no such peer */
  CHECK(beat(3, 1) == RF_TRANSPORT_ENOPEER);
  CHECK(rf_transport_add_peer(nodes[3].t, 3, "127.0.0.1", ports[1]) ==
        UV_EINVAL);
  CHECK(rf_transport_add_peer(nodes[3].t, 1, "example.org", ports[1]) ==
        UV_EINVAL);
  CHECK(rf_transport_add_peer(nodes[3].t, 1, "127.0.0.1", ports[1]) == 0);
  CHECK(rf_transport_add_peer(nodes[3].t, 1, "127.0.0.1", ports[1]) == 0);
  CHECK_WAIT(loop, &tick, nodes[3].ups[1], WAIT_MS);
  /* 1 does not know 3 and does not adopt learnt nodes: its frame closes */
  CHECK(beat(3, 1) == 0);
  CHECK_WAIT(loop, &tick, nodes[1].closes > 0, WAIT_MS);
  CHECK(nodes[1].got[3] == 0 && nodes[1].learns[3] >= 1);
  /* 4 removes 1: closed, reported down, sending fails, 1's frames close */
  nodes[4].adopt = 0;
  CHECK(rf_transport_remove_peer(nodes[4].t, 1) == 0);
  CHECK(nodes[4].downs[1] == 1);
  CHECK(rf_transport_remove_peer(nodes[4].t, 1) == RF_TRANSPORT_ENOPEER);
  CHECK(beat(4, 1) == RF_TRANSPORT_ENOPEER);
  CHECK(!rf_transport_connected(nodes[4].t, 1));
  nodes[4].closes = 0;
  CHECK(beat(1, 4) == 0 || beat(1, 4) == RF_TRANSPORT_EDOWN);
  CHECK_WAIT(loop, &tick, nodes[4].closes > 0, WAIT_MS);
  CHECK(nodes[4].got[1] == 1);
  /* and back: added again at the address it learnt */
  CHECK(rf_transport_add_peer(nodes[4].t, 1, "127.0.0.1", ports[1]) == 0);
  CHECK_WAIT(loop, &tick, nodes[4].ups[1] == 2, WAIT_MS);
  CHECK(beat(4, 1) == 0);
  CHECK_WAIT(loop, &tick, nodes[1].got[4] == 2, WAIT_MS);
  /* a legacy (empty) hello teaches nothing: 2 never learns 1, and 1's
  ** frames to it close the connection */
  nodes[2].adopt = 1;
  start(2, NULL, 0, 0);
  CHECK(rf_transport_legacy_hello(nodes[1].t, 2, 1) == RF_TRANSPORT_ENOPEER);
  CHECK(rf_transport_add_peer(nodes[1].t, 2, "127.0.0.1", ports[2]) == 0);
  CHECK(rf_transport_legacy_hello(nodes[1].t, 2, 1) == 0);
  CHECK_WAIT(loop, &tick, nodes[1].ups[2], WAIT_MS);
  nodes[2].closes = 0;
  CHECK(beat(1, 2) == 0);
  CHECK_WAIT(loop, &tick, nodes[2].closes > 0, WAIT_MS);
  CHECK(nodes[2].learns[1] == 0 && nodes[2].got[1] == 0);
  for (int i = 1; i < 5; i++)
    if (nodes[i].t) rf_transport_close(nodes[i].t, on_closed, &nodes[i]);
  CHECK_WAIT(loop, &tick, nodes[1].done && nodes[2].done && nodes[3].done &&
             nodes[4].done, WAIT_MS);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(loop) == 0);
  return check_summary("test_transport_learn");
}
