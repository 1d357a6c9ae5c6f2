/*
** transport.c -- the peer transport on libuv (see rafting/transport.h).
**
** Handles: the listener, one redial timer per peer, at most one outbound
** connection per peer (a fresh uv_tcp_t per dial: a closed handle cannot be
** reused), and the accepted inbound connections.  Every handle is counted
** in t->handles and freed in its close callback; after rf_transport_close()
** the last close callback frees t and calls done.
**
** An outbound connection is detached from its peer (c->peer = NULL) the
** moment it is closed, so the callbacks libuv still delivers for it
** (connect/write with UV_ECANCELED) touch nothing but the connection.
**
** With TLS (rafting/tls.h) every connection also owns an rf_tls: socket
** bytes go through rf_tls_feed() and frames through rf_tls_write(), whose
** ciphertext comes back to the same uv_write path.  An outbound connection
** counts as up once its handshake proved the server is the node dialed; an
** inbound one learns its peer's id from the certificate, and a frame whose
** from is another id is dropped.
*/
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rafting/bytes.h"
#include "rafting/codec.h"
#include "rafting/metrics.h"
#include "rafting/tls.h"
#include "rafting/transport.h"
#include "rafting/util.h"

#define DEF_MAX_FRAME (4u << 20)
#define DEF_QUEUE (8u << 20)
#define DEF_BACKOFF_MIN 50
#define DEF_BACKOFF_MAX 1000
#define READ_CHUNK 65536
#define KEEP_BUF (256u << 10) /* idle read buffers above this are freed */
#define DEF_IN_PER_NODE 4
#define DEF_FIRST_FRAME_MS 5000
#define DEF_FRAME_MS 10000
#define DEF_IN_BUFFER (32u << 20)

typedef struct peer peer;

typedef struct outconn { /* one dial, then the connection we send on */
  uv_tcp_t tcp;
  uv_connect_t req;
  rf_transport *t;
  peer *peer;            /* NULL once closing */
  size_t queued;         /* bytes in uv_write not yet completed */
  rf_tls *tls;           /* NULL without TLS */
} outconn;

typedef struct wreq {
  uv_write_t req;
  outconn *c;
  uint8_t *frame;
  size_t len;
} wreq;

struct peer {             /* malloc'd alone: added and removed at run time */
  rf_transport *t;
  uint64_t id;
  char *host;
  char addr_text[RF_ADDR_MAX]; /* host:port, for the hello */
  int port;
  struct sockaddr_storage addr;
  uv_timer_t timer;      /* redial */
  outconn *conn;         /* dialing or connected, or NULL */
  int up;                /* conn is connected */
  unsigned fails;        /* failed dials since the last connection */
  uint64_t sent, dropped;
  int removed;           /* rf_transport_remove_peer: closing, not in t->peers */
  int legacy_hello;      /* an empty hello frame, as nodes before Hello */
};

typedef struct inconn { /* accepted: we only read frames from it */
  uv_tcp_t tcp;
  rf_transport *t;
  struct inconn *prev, *next;
  uint8_t *buf;
  size_t len, cap;
  int closing;
  int framed;            /* a whole frame arrived */
  int over;              /* refused room: inbound buffers at their cap */
  uint64_t deadline;     /* loop ms: close unless a frame ends by then */
  char name[64];         /* remote address, for log lines */
  rf_tls *tls;           /* NULL without TLS */
  uint64_t auth;         /* the peer's id from its certificate, 0: not yet */
  uint64_t spoofed;      /* frames dropped: from another id than auth */
} inconn;

typedef struct inwreq { /* TLS handshake bytes on an inbound connection */
  uv_write_t req;
  uint8_t *p;
} inwreq;

struct rf_transport {
  uv_loop_t *loop;
  char *cluster;
  uint64_t self;
  size_t max_frame, queue_bound;
  unsigned bo_min, bo_max;
  uint64_t rng;
  void *ud;
  void (*recv)(void *, const raft_msg *);
  void (*peer_state)(void *, uint64_t, int);
  void (*log)(void *, int, const char *);
  void (*learn)(void *, uint64_t, const char *, int);
  int learning;          /* hellos from unknown nodes are reported */
  char *advertise;       /* "host:port" this node's hellos carry, or "" */
  uv_tcp_t listener;
  int port;
  peer **peers;
  size_t n_peers, cap_peers;
  int auto_in;           /* max_in follows the number of peers */
  inconn *in;            /* open inbound connections */
  size_t n_in, max_in;
  unsigned first_ms, frame_ms;
  size_t in_bytes, in_cap; /* read buffers of all inbound connections */
  uv_timer_t sweep;      /* closes inbound connections past deadline */
  size_t handles;        /* initialized, not yet close-called-back */
  int closing;
  void (*done)(void *);
  void *done_ud;
  char sink[256];        /* outbound connections should never be read */
  rf_tls_ctx *tls_server, *tls_client; /* both or neither */
  uint8_t tls_in[READ_CHUNK]; /* ciphertext read, fed at once */
};

static void dial(peer *p);
static void on_write(uv_write_t *req, int status);

/* ---- helpers -------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void tlog(rf_transport *t, int level, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  if (t->log == NULL || t->closing) return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  t->log(t->ud, level, msg);
}

/* Backoff jitter only: any seed is fine. */
static uint64_t rnd(rf_transport *t) { return rf_splitmix64(&t->rng); }

/* min * 2^fails capped at max, then a uniform pick in [d/2, d] so that
** peers that lost each other together do not redial in lockstep. */
static uint64_t backoff_ms(rf_transport *t, unsigned fails) {
  uint64_t d = t->bo_min;
  for (unsigned i = 0; i < fails && d < t->bo_max; i++) d *= 2;
  if (d > t->bo_max) d = t->bo_max;
  return d / 2 + rnd(t) % (d - d / 2 + 1);
}

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  return d != NULL ? memcpy(d, s, n) : NULL;
}

static peer *find_peer(const rf_transport *t, uint64_t id) {
  for (size_t i = 0; i < t->n_peers; i++)
    if (t->peers[i]->id == id) return t->peers[i];
  return NULL;
}

static void free_peer(peer *p) {
  free(p->host);
  free(p);
}

/* Peers still listed own no handle (close() empties the list). */
static void free_transport(rf_transport *t) {
  for (size_t i = 0; i < t->n_peers; i++) free_peer(t->peers[i]);
  free(t->peers);
  free(t->cluster);
  free(t->advertise);
  free(t);
}

/* Every close callback ends here: the last one after close frees t. */
static void handle_gone(rf_transport *t) {
  void (*done)(void *) = t->done;
  void *ud = t->done_ud;
  if (--t->handles > 0 || !t->closing) return;
  free_transport(t);
  if (done != NULL) done(ud);
}

static void on_handle_closed(uv_handle_t *h) { handle_gone(h->data); }

/* A peer's timer closes last: the peer goes with it. */
static void on_timer_closed(uv_handle_t *h) {
  peer *p = h->data;
  rf_transport *t = p->t;
  free_peer(p);
  handle_gone(t);
}

/* ---- outbound ------------------------------------------------------- */

static void on_out_closed(uv_handle_t *h) {
  outconn *c = h->data;
  rf_transport *t = c->t;
  rf_tls_free(c->tls);
  free(c);
  handle_gone(t);
}

static void on_redial(uv_timer_t *timer) { dial(timer->data); }

/* Close p's connection; unless the transport is closing, tell the owner
** if it was up and arm the redial timer. */
static void out_drop(outconn *c, const char *what, int err) {
  peer *p = c->peer;
  rf_transport *t = c->t;
  unsigned fails = 0;
  int was_up;
  if (p == NULL) return; /* already closing */
  was_up = p->up;
  p->conn = NULL;
  p->up = 0;
  c->peer = NULL;
  uv_close((uv_handle_t *)&c->tcp, on_out_closed);
  if (t->closing) return;
  if (was_up) {
    tlog(t, RF_LOG_DEBUG, "peer %" PRIu64 " gone: %s: %s", p->id, what,
         uv_strerror(err));
    if (t->peer_state != NULL) t->peer_state(t->ud, p->id, 0);
    if (t->closing) return; /* the callback closed us */
  }
  if (p->removed) return; /* its timer is closing: no redial */
  if (!was_up) {
    /* Log the first failure of a series; the rest only at debug. */
    tlog(t, p->fails == 0 ? RF_LOG_INFO : RF_LOG_DEBUG,
         "peer %" PRIu64 " (%s:%d) unreachable: %s: %s", p->id, p->host,
         p->port, what, uv_strerror(err));
    fails = p->fails++;
  }
  uv_timer_start(&p->timer, on_redial, backoff_ms(t, fails), 0);
}

static void on_out_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  outconn *c = h->data;
  (void)size;
  if (c->tls != NULL)
    *buf = uv_buf_init((char *)c->t->tls_in, sizeof(c->t->tls_in));
  else
    *buf = uv_buf_init(c->t->sink, sizeof(c->t->sink));
}

static void out_up(outconn *c);

/* TLS: the handshake's bytes; any plaintext is a protocol error, as is a
** server that is not the node dialed (SSL_set1_host checked it already;
** this is the same rule the inbound side applies). */
static void out_tls_read(outconn *c, const uv_buf_t *buf, size_t n) {
  peer *p = c->peer;
  char why[300];
  int rc = rf_tls_feed(c->tls, buf->base, n);
  if (c->peer == NULL) return; /* a failed write closed it */
  if (rc < 0) {
    snprintf(why, sizeof why, "%s", *rf_tls_error(c->tls)
                                        ? rf_tls_error(c->tls) : "tls");
    out_drop(c, why, rc);
  } else if (!p->up && rf_tls_ready(c->tls)) {
    if (rf_tls_peer_is_node(c->tls, p->id)) out_up(c);
    else out_drop(c, "tls: certificate does not name the node dialed",
                  UV_EPROTO);
  }
}

/* Peers never write frames on our outbound connection: reading only runs
** the TLS handshake and notices EOF and resets, so a restarted peer gets
** redialed at once. */
static void on_out_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  outconn *c = s->data;
  if (nread > 0 && c->tls != NULL)
    out_tls_read(c, buf, (size_t)nread);
  else if (nread > 0)
    out_drop(c, "read", UV_EPROTO);
  else if (nread < 0)
    out_drop(c, "read", (int)nread);
}

static void on_write(uv_write_t *req, int status);

/* Queue bytes (a frame, or TLS records) on c; takes b.  0 or <0. */
static int out_write(outconn *c, uint8_t *b, size_t len) {
  wreq *w = malloc(sizeof(*w));
  uv_buf_t ub = uv_buf_init((char *)b, (unsigned)len);
  int rc;
  if (w == NULL) {
    free(b);
    return UV_ENOMEM;
  }
  w->req.data = w;
  w->c = c;
  w->frame = b;
  w->len = len;
  if ((rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, on_write)) < 0) {
    free(b); /* the read side will notice a broken connection */
    free(w);
    return rc;
  }
  c->queued += len;
  return 0;
}

static int out_tls_send(void *ud, uint8_t *b, size_t n) {
  return out_write(ud, b, n);
}

static int out_tls_recv(void *ud, const uint8_t *b, size_t n) {
  (void)ud, (void)b, (void)n;
  return UV_EPROTO; /* the peer must not send us frames here */
}

/* The hello goes first as soon as the connection carries frames (after
** the TLS handshake): who we are and where we listen (proto/raft.proto),
** and an inbound connection that stays silent past first_ms is not a peer.
** A failure needs no handling: the peer closes us at its deadline and we
** redial. */
static void send_hello(outconn *c) {
  rf_transport *t = c->t;
  uint8_t *hello;
  size_t len = RF_FRAME_HEADER;
  if (c->peer->legacy_hello) { /* length 0: every version skips it */
    if ((hello = calloc(1, len)) == NULL) return;
  } else if (rf_codec_encode_hello(t->cluster, t->self, c->peer->id,
                                   t->advertise, &hello, &len) < 0) {
    return;
  }
  if (c->tls != NULL) {
    (void)rf_tls_write(c->tls, hello, len);
    free(hello);
  } else {
    (void)out_write(c, hello, len);
  }
}

static void on_connect(uv_connect_t *req, int status) {
  outconn *c = req->data;
  peer *p = c->peer;
  rf_transport *t = c->t;
  int rc;
  if (p == NULL) return; /* closed while dialing */
  if (status < 0) {
    out_drop(c, "connect", status);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (t->tls_client != NULL) {
    rf_tls_io io = {c, out_tls_send, out_tls_recv};
    char name[32];
    snprintf(name, sizeof name, "node%" PRIu64, p->id);
    if ((c->tls = rf_tls_new(t->tls_client, &io, name)) == NULL) {
      out_drop(c, "tls", UV_ENOMEM);
      return;
    }
    if (c->peer == NULL) return; /* sending the hello failed */
  }
  rc = uv_read_start((uv_stream_t *)&c->tcp, on_out_alloc, on_out_read);
  if (rc < 0) {
    out_drop(c, "read_start", rc);
    return;
  }
  if (c->tls == NULL) out_up(c);
}

/* The connection can carry frames now: the hello goes first. */
static void out_up(outconn *c) {
  peer *p = c->peer;
  rf_transport *t = c->t;
  send_hello(c);
  p->up = 1;
  p->fails = 0;
  tlog(t, RF_LOG_DEBUG, "peer %" PRIu64 " connected (%s:%d%s)", p->id, p->host,
       p->port, c->tls ? ", tls" : "");
  if (t->peer_state != NULL) t->peer_state(t->ud, p->id, 1);
}

static void dial(peer *p) {
  rf_transport *t = p->t;
  outconn *c;
  int rc;
  if (t->closing || p->conn != NULL) return;
  c = calloc(1, sizeof(*c));
  if (c == NULL || uv_tcp_init(t->loop, &c->tcp) < 0) {
    free(c);
    tlog(t, RF_LOG_ERROR, "peer %" PRIu64 ": cannot open a socket", p->id);
    uv_timer_start(&p->timer, on_redial, t->bo_max, 0);
    return;
  }
  t->handles++;
  c->tcp.data = c;
  c->req.data = c;
  c->t = t;
  c->peer = p;
  p->conn = c;
  rc = uv_tcp_connect(&c->req, &c->tcp, (const struct sockaddr *)&p->addr,
                      on_connect);
  if (rc < 0) out_drop(c, "connect", rc);
}

static void on_write(uv_write_t *req, int status) {
  wreq *w = req->data;
  outconn *c = w->c;
  c->queued -= w->len;
  free(w->frame);
  free(w);
  if (status < 0 && status != UV_ECANCELED) out_drop(c, "write", status);
}

/* ---- inbound -------------------------------------------------------- */

static void on_in_closed(uv_handle_t *h) {
  inconn *c = h->data;
  rf_transport *t = c->t;
  t->in_bytes -= c->cap;
  rf_tls_free(c->tls);
  free(c->buf);
  free(c);
  handle_gone(t);
}

static void in_close(inconn *c) {
  rf_transport *t = c->t;
  if (c->closing) return;
  c->closing = 1;
  t->n_in--;
  if (c->prev != NULL) c->prev->next = c->next;
  else t->in = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  uv_close((uv_handle_t *)&c->tcp, on_in_closed);
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void in_fail(inconn *c, const char *fmt, ...) {
  char why[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof(why), fmt, ap);
  va_end(ap);
  tlog(c->t, RF_LOG_WARN, "closing peer connection from %s: %s", c->name,
       why);
  in_close(c);
}

/* Room for a read chunk, growing by doubling up to the rest of the pending
** frame (its length is already checked against max_frame): memory follows
** the bytes that arrived, not what a frame header claims, and all inbound
** buffers together stay under in_cap. */
static void on_in_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  inconn *c = h->data;
  rf_transport *t = c->t;
  size_t need = READ_CHUNK;
  (void)size;
  if (c->tls != NULL) { /* ciphertext: fed before the next read */
    *buf = uv_buf_init((char *)c->t->tls_in, sizeof(c->t->tls_in));
    return;
  }
  if (c->len >= RF_FRAME_HEADER) {
    size_t want = RF_FRAME_HEADER + (size_t)rf_frame_len(c->buf) - c->len;
    if (want <= RF_FRAME_HEADER + t->max_frame && want > need)
      need = want < c->cap ? want : c->cap > need ? c->cap : need;
  }
  if (c->cap - c->len < need) {
    size_t ncap = c->len + need;
    uint8_t *nb = t->in_bytes - c->cap + ncap <= t->in_cap
                      ? realloc(c->buf, ncap) : NULL;
    if (nb == NULL) {
      c->over = t->in_bytes - c->cap + ncap > t->in_cap;
      *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
      return;
    }
    t->in_bytes += ncap - c->cap;
    c->buf = nb;
    c->cap = ncap;
  }
  *buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

/* A hello (cluster, recipient and with TLS the certificate already
** checked).  While learning, a node we have no address for is reported to
** learn; a known address is never replaced.  0 or <0. */
static int hello(inconn *c, uint64_t from, const char *addr) {
  rf_transport *t = c->t;
  char host[RF_ADDR_MAX], why[160];
  int port;
  if (find_peer(t, from) != NULL || t->learn == NULL || !t->learning ||
      *addr == '\0')
    return 0;
  if (rf_addr_split(addr, host, sizeof(host), &port, why, sizeof(why)) < 0) {
    in_fail(c, "hello from node %" PRIu64 ": %s", from, why);
    return UV_EINVAL;
  }
  tlog(t, RF_LOG_DEBUG, "hello from node %" PRIu64 " (no peer) at %s", from,
       addr);
  t->learn(t->ud, from, host, port);
  return c->closing ? UV_ECANCELED : 0;
}

/* One complete frame: decode, check, hand to recv. 0 = keep reading. */
static int deliver(inconn *c, const uint8_t *p, size_t n) {
  rf_transport *t = c->t;
  rf_decoded d;
  int rc = rf_codec_decode(p, n, t->cluster, &d);
  if (rc < 0) {
    in_fail(c, "%s", rf_codec_strerror(rc));
    return rc;
  }
  if (d.msg.to != t->self) {
    in_fail(c, "frame for node %" PRIu64 ", this is %" PRIu64, d.msg.to,
            t->self);
    rc = UV_EINVAL;
  } else if (c->tls != NULL && c->auth == 0 &&
             (d.hello == NULL || !rf_tls_peer_is_node(c->tls, d.msg.from))) {
    in_fail(c, "its certificate names no node this one knows, and it did not "
            "say hello as the node it names");
    rc = UV_EPROTO;
  } else if (c->tls != NULL && c->auth == 0) {
    c->auth = d.msg.from; /* a node to learn: its certified hello */
    rc = hello(c, d.msg.from, d.hello);
  } else if (c->tls != NULL && d.msg.from != c->auth) {
    /* Log the first, count the rest: a flood must not flood the log. */
    c->spoofed++;
    tlog(t, c->spoofed == 1 ? RF_LOG_WARN : RF_LOG_DEBUG,
         "dropped a frame from %s: it claims node %" PRIu64 " but the "
         "certificate is node %" PRIu64 " (%" PRIu64 " dropped)", c->name,
         d.msg.from, c->auth, c->spoofed);
  } else if (d.hello != NULL) {
    rc = hello(c, d.msg.from, d.hello);
  } else if (find_peer(t, d.msg.from) == NULL) {
    in_fail(c, "frame from unknown node %" PRIu64, d.msg.from);
    rc = UV_EINVAL;
  } else {
    t->recv(t->ud, &d.msg);
  }
  rf_decoded_free(&d);
  return rc;
}

/* Delivers every whole frame buffered; returns how many bytes they took. */
static size_t parse_frames(inconn *c) {
  size_t off = 0, max = c->t->max_frame;
  while (!c->closing && c->len - off >= RF_FRAME_HEADER) {
    size_t n = rf_frame_len(c->buf + off);
    if (n > max) {
      in_fail(c, "frame of %zu bytes over the maximum %zu", n, max);
      return 0;
    }
    if (c->len - off - RF_FRAME_HEADER < n) break;
    if (n > 0 && deliver(c, c->buf + off + RF_FRAME_HEADER, n) < 0) return 0;
    off += RF_FRAME_HEADER + n;
  }
  if (c->closing || off == 0) return 0; /* recv may have closed us */
  memmove(c->buf, c->buf + off, c->len - off);
  c->len -= off;
  if (c->len == 0 && c->cap > KEEP_BUF) { /* don't pin a big frame's room */
    c->t->in_bytes -= c->cap;
    free(c->buf);
    c->buf = NULL;
    c->cap = 0;
  }
  return off;
}

/* The first frame must end within first_ms of the accept; after that each
** frame within frame_ms of its first byte (a slow sender holds no buffer
** for long); an idle connection has no deadline. */
static void in_rearm(inconn *c, size_t took) {
  rf_transport *t = c->t;
  if (took > 0) c->framed = 1;
  if (!c->framed) return;
  if (c->len == 0) c->deadline = 0;
  else if (took > 0 || c->deadline == 0)
    c->deadline = uv_now(t->loop) + t->frame_ms;
}

static void on_sweep(uv_timer_t *timer) {
  rf_transport *t = timer->data;
  uint64_t now = uv_now(t->loop);
  inconn *c = t->in, *next;
  for (; c != NULL; c = next) {
    next = c->next; /* in_fail unlinks c */
    if (c->deadline != 0 && now >= c->deadline)
      in_fail(c, c->framed ? "frame not finished within %u ms"
                           : "no whole frame within %u ms of connecting",
              c->framed ? t->frame_ms : t->first_ms);
  }
}

/* A check a few times per deadline is precise enough. */
static void start_sweep(rf_transport *t) {
  unsigned every = (t->first_ms < t->frame_ms ? t->first_ms : t->frame_ms) / 4;
  if (every < 10) every = 10;
  if (every > 1000) every = 1000;
  uv_timer_init(t->loop, &t->sweep); /* cannot fail */
  t->sweep.data = t;
  t->handles++;
  uv_timer_start(&t->sweep, on_sweep, every, every);
}

/* Once the handshake is done: which node the certificate proves, or the
** connection closes.  0 or <0. */
static int in_auth(inconn *c) {
  rf_transport *t = c->t;
  for (size_t i = 0; c->auth == 0 && i < t->n_peers; i++)
    if (rf_tls_peer_is_node(c->tls, t->peers[i]->id))
      c->auth = t->peers[i]->id;
  /* a node we may learn: its hello says which, deliver() checks it */
  if (c->auth != 0 || (t->learn != NULL && t->learning)) return 0;
  in_fail(c, "its certificate names no other node of this cluster");
  return UV_EPROTO;
}

/* Room for n more plaintext bytes, doubling up to a whole frame, under the
** same global cap as plaintext connections (on_in_alloc).  0 or <0. */
static int in_tls_grow(inconn *c, size_t n) {
  rf_transport *t = c->t;
  size_t need = c->len + n, cap = c->cap * 2;
  uint8_t *nb;
  if (cap > RF_FRAME_HEADER + t->max_frame) cap = RF_FRAME_HEADER + t->max_frame;
  if (cap < READ_CHUNK) cap = READ_CHUNK;
  if (cap < need) cap = need;
  if (t->in_bytes - c->cap + cap > t->in_cap) {
    in_fail(c, "partial frames of all peers over %zu bytes", t->in_cap);
    return UV_ENOBUFS;
  }
  if ((nb = realloc(c->buf, cap)) == NULL) {
    in_fail(c, "out of memory");
    return UV_ENOMEM;
  }
  t->in_bytes += cap - c->cap;
  c->buf = nb;
  c->cap = cap;
  return 0;
}

/* TLS plaintext: append to the frame buffer and parse. */
static int in_tls_recv(void *ud, const uint8_t *p, size_t n) {
  inconn *c = ud;
  size_t took;
  if (c->closing) return UV_ECANCELED;
  if (c->auth == 0 && in_auth(c) < 0) return UV_EPROTO;
  if (c->cap - c->len < n && in_tls_grow(c, n) < 0) return UV_ENOMEM;
  memcpy(c->buf + c->len, p, n);
  c->len += n;
  took = parse_frames(c);
  if (!c->closing) in_rearm(c, took);
  return c->closing ? UV_ECANCELED : 0;
}

static void on_in_written(uv_write_t *req, int status) {
  inwreq *w = req->data;
  (void)status; /* a broken connection shows on the read side */
  free(w->p);
  free(w);
}

/* TLS handshake records (the only bytes we ever send inbound). */
static int in_tls_send(void *ud, uint8_t *p, size_t n) {
  inconn *c = ud;
  inwreq *w;
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  int rc = UV_ENOMEM;
  if (c->closing || (w = malloc(sizeof(*w))) == NULL) {
    free(p);
    return c->closing ? UV_ECANCELED : rc;
  }
  w->req.data = w;
  w->p = p;
  if ((rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1,
                     on_in_written)) < 0) {
    free(p);
    free(w);
  }
  return rc;
}

static void on_in_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  inconn *c = s->data;
  size_t took;
  if (nread > 0 && c->tls != NULL) { /* plaintext comes via in_tls_recv */
    int rc = rf_tls_feed(c->tls, buf->base, (size_t)nread);
    /* who it was first: the same read may hold the handshake's end and a
    ** close, and the certificate is the more useful reason to log */
    if (!c->closing && c->auth == 0 && rf_tls_ready(c->tls) && in_auth(c) < 0)
      return;
    if (rc < 0 && !c->closing)
      in_fail(c, "%s", *rf_tls_error(c->tls) ? rf_tls_error(c->tls)
                                             : uv_strerror(rc));
    return;
  }
  if (nread < 0) {
    if (nread == UV_EOF)
      tlog(c->t, RF_LOG_DEBUG, "peer connection from %s closed", c->name);
    else if (c->over)
      tlog(c->t, RF_LOG_WARN, "closing peer connection from %s: partial "
           "frames of all peers over %zu bytes", c->name, c->t->in_cap);
    else
      tlog(c->t, RF_LOG_WARN, "peer connection from %s: %s", c->name,
           uv_strerror((int)nread));
    in_close(c);
    return;
  }
  c->len += (size_t)nread;
  took = parse_frames(c);
  if (!c->closing) in_rearm(c, took);
}

static void name_remote(inconn *c) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  char ip[48] = "?";
  int port = 0;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
      uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
  }
  snprintf(c->name, sizeof(c->name), "%s:%d", ip, port);
}

static void on_connection(uv_stream_t *server, int status) {
  rf_transport *t = server->data;
  inconn *c;
  int rc;
  if (status < 0) {
    tlog(t, RF_LOG_WARN, "peer listener: %s", uv_strerror(status));
    return;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL || uv_tcp_init(t->loop, &c->tcp) < 0) {
    free(c); /* the pending connection stays in the backlog */
    tlog(t, RF_LOG_ERROR, "peer listener: cannot accept: out of memory");
    return;
  }
  t->handles++;
  c->tcp.data = c;
  c->t = t;
  c->deadline = uv_now(t->loop) + t->first_ms;
  t->n_in++;
  c->next = t->in;
  if (t->in != NULL) t->in->prev = c;
  t->in = c;
  rc = uv_accept(server, (uv_stream_t *)&c->tcp);
  if (rc == 0 && t->tls_server != NULL) {
    rf_tls_io io = {c, in_tls_send, in_tls_recv};
    if ((c->tls = rf_tls_new(t->tls_server, &io, NULL)) == NULL)
      rc = UV_ENOMEM;
  }
  if (rc == 0)
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_in_alloc, on_in_read);
  if (rc < 0) {
    tlog(t, RF_LOG_WARN, "peer listener: accept: %s", uv_strerror(rc));
    in_close(c);
    return;
  }
  name_remote(c);
  if (t->n_in > t->max_in) {
    in_fail(c, "already %zu inbound peer connections (the maximum)",
            t->max_in);
    return;
  }
  tlog(t, RF_LOG_DEBUG, "peer connection from %s", c->name);
}

/* ---- start / send / close ------------------------------------------- */

static int check_config(const rf_transport_config *cfg) {
  if (cfg == NULL || cfg->cluster == NULL || *cfg->cluster == '\0' ||
      cfg->self == RAFT_NONE || cfg->recv == NULL ||
      (cfg->tls_server == NULL) != (cfg->tls_client == NULL) ||
      (cfg->n_peers > 0 && cfg->peers == NULL))
    return UV_EINVAL;
  for (size_t i = 0; i < cfg->n_peers; i++) {
    const rf_peer_addr *a = &cfg->peers[i];
    if (a->id == RAFT_NONE || a->id == cfg->self || a->port <= 0)
      return UV_EINVAL;
    for (size_t j = 0; j < i; j++)
      if (cfg->peers[j].id == a->id) return UV_EINVAL;
  }
  return 0;
}

/* A peer's address: resolved (numeric) and copied.  0 or <0. */
static int set_addr(peer *p, const char *host, int port) {
  struct sockaddr_storage ss;
  char *h;
  if (host == NULL || port <= 0 || port > 65535 ||
      rf_addr_resolve(host, port, &ss) < 0)
    return UV_EINVAL;
  if ((h = dupstr(host)) == NULL) return UV_ENOMEM;
  free(p->host);
  p->host = h;
  p->port = port;
  p->addr = ss;
  return 0;
}

/* A new peer in t->peers (no handle yet).  0 or <0. */
static int new_peer(rf_transport *t, uint64_t id, const char *host, int port,
                    peer **out) {
  peer *p;
  int rc;
  if (t->n_peers == t->cap_peers) {
    size_t cap = t->cap_peers ? 2 * t->cap_peers : 8;
    peer **np = realloc(t->peers, cap * sizeof(*np));
    if (np == NULL) return UV_ENOMEM;
    t->peers = np;
    t->cap_peers = cap;
  }
  if ((p = calloc(1, sizeof(*p))) == NULL) return UV_ENOMEM;
  if ((rc = set_addr(p, host, port)) < 0) {
    free(p);
    return rc;
  }
  p->t = t;
  p->id = id;
  t->peers[t->n_peers++] = p;
  if (t->auto_in) t->max_in = DEF_IN_PER_NODE * (t->n_peers + 1);
  *out = p;
  return 0;
}

static int copy_peers(rf_transport *t, const rf_transport_config *cfg) {
  peer *p;
  for (size_t i = 0; i < cfg->n_peers; i++) {
    const rf_peer_addr *a = &cfg->peers[i];
    int rc = new_peer(t, a->id, a->host, a->port, &p);
    if (rc < 0) return rc;
  }
  return 0;
}

/* Its redial timer, then the first dial. */
static void start_peer(peer *p) {
  uv_timer_init(p->t->loop, &p->timer); /* cannot fail */
  p->timer.data = p;
  p->t->handles++;
  dial(p);
}

static rf_transport *new_transport(uv_loop_t *loop,
                                   const rf_transport_config *cfg) {
  rf_transport *t = calloc(1, sizeof(*t));
  if (t == NULL) return NULL;
  t->loop = loop;
  t->cluster = dupstr(cfg->cluster);
  t->self = cfg->self;
  t->max_frame = cfg->max_frame_bytes ? cfg->max_frame_bytes : DEF_MAX_FRAME;
  t->queue_bound = cfg->send_queue_bytes;
  if (t->queue_bound == 0) /* default: 8 MiB, or one max frame if larger */
    t->queue_bound = t->max_frame + RF_FRAME_HEADER > DEF_QUEUE
                         ? t->max_frame + RF_FRAME_HEADER : DEF_QUEUE;
  t->auto_in = cfg->max_inbound == 0;
  t->max_in = cfg->max_inbound ? cfg->max_inbound
                               : DEF_IN_PER_NODE * (cfg->n_peers + 1);
  t->first_ms = cfg->first_frame_ms ? cfg->first_frame_ms : DEF_FIRST_FRAME_MS;
  t->frame_ms = cfg->frame_ms ? cfg->frame_ms : DEF_FRAME_MS;
  t->in_cap = cfg->inbound_buffer_bytes;
  if (t->in_cap == 0) /* default: 32 MiB, or one max frame if larger */
    t->in_cap = t->max_frame + RF_FRAME_HEADER > DEF_IN_BUFFER
                    ? t->max_frame + RF_FRAME_HEADER : DEF_IN_BUFFER;
  t->bo_min = cfg->backoff_min_ms ? cfg->backoff_min_ms : DEF_BACKOFF_MIN;
  t->bo_max = cfg->backoff_max_ms ? cfg->backoff_max_ms : DEF_BACKOFF_MAX;
  if (t->bo_max < t->bo_min) t->bo_max = t->bo_min;
  t->rng = cfg->seed ^ (cfg->self * 0x9e3779b97f4a7c15ull);
  t->ud = cfg->ud;
  t->recv = cfg->recv;
  t->peer_state = cfg->peer_state;
  t->log = cfg->log;
  t->learn = cfg->learn;
  t->learning = 1;
  t->advertise = dupstr(cfg->advertise ? cfg->advertise : "");
  t->tls_server = cfg->tls_server;
  t->tls_client = cfg->tls_client;
  return t;
}

static int open_listener(rf_transport *t, const rf_transport_config *cfg) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  const char *host = cfg->listen_host ? cfg->listen_host : "127.0.0.1";
  int rc = rf_addr_resolve(host, cfg->listen_port, &ss);
  if (rc < 0) return rc;
  if ((rc = uv_tcp_init(t->loop, &t->listener)) < 0) return rc;
  t->handles++;
  t->listener.data = t;
  if ((rc = uv_tcp_bind(&t->listener, (struct sockaddr *)&ss, 0)) < 0 ||
      (rc = uv_listen((uv_stream_t *)&t->listener, 128, on_connection)) < 0 ||
      (rc = uv_tcp_getsockname(&t->listener, (struct sockaddr *)&ss, &len)) < 0)
    return rc;
  t->port = ntohs(ss.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)&ss)->sin6_port
                      : ((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

int rf_transport_start(uv_loop_t *loop, const rf_transport_config *cfg,
                       rf_transport **out) {
  rf_transport *t;
  int rc;
  if (out != NULL) *out = NULL;
  if (loop == NULL || out == NULL || check_config(cfg) < 0) return UV_EINVAL;
  if ((t = new_transport(loop, cfg)) == NULL) return UV_ENOMEM;
  if (t->max_frame > INT32_MAX || /* uv_buf_t lengths are 32-bit */
      t->queue_bound < RF_FRAME_HEADER + t->max_frame || /* one must fit */
      t->in_cap < RF_FRAME_HEADER + t->max_frame)
    rc = UV_EINVAL;
  else if (t->cluster == NULL || t->advertise == NULL)
    rc = UV_ENOMEM;
  else if ((rc = copy_peers(t, cfg)) == 0)
    rc = open_listener(t, cfg);
  if (rc < 0) {
    t->closing = 1; /* no done callback: t frees itself once closed */
    if (t->handles == 0) free_transport(t);
    else uv_close((uv_handle_t *)&t->listener, on_handle_closed);
    return rc;
  }
  start_sweep(t);
  for (size_t i = 0; i < t->n_peers; i++) start_peer(t->peers[i]);
  *out = t;
  return 0;
}

int rf_transport_add_peer(rf_transport *t, uint64_t id, const char *host,
                          int port) {
  peer *p;
  int rc;
  if (t->closing) return RF_TRANSPORT_ECLOSING;
  if (id == RAFT_NONE || id == t->self) return UV_EINVAL;
  if ((p = find_peer(t, id)) != NULL) {
    if (host != NULL && p->port == port && strcmp(p->host, host) == 0)
      return 0;
    if ((rc = set_addr(p, host, port)) < 0) return rc;
    tlog(t, RF_LOG_INFO, "peer %" PRIu64 " moved to %s:%d", id, host, port);
    if (p->conn != NULL) out_drop(p->conn, "address changed", UV_ECANCELED);
    uv_timer_stop(&p->timer);
    p->fails = 0;
    dial(p);
    return 0;
  }
  if ((rc = new_peer(t, id, host, port, &p)) < 0) return rc;
  tlog(t, RF_LOG_DEBUG, "peer %" PRIu64 " added (%s:%d)", id, host, port);
  start_peer(p);
  return 0;
}

void rf_transport_learning(rf_transport *t, int on) { t->learning = on; }

int rf_transport_legacy_hello(rf_transport *t, uint64_t id, int on) {
  peer *p = find_peer(t, id);
  if (p == NULL) return RF_TRANSPORT_ENOPEER;
  p->legacy_hello = on; /* from the next connection on */
  return 0;
}

int rf_transport_remove_peer(rf_transport *t, uint64_t id) {
  peer *p = find_peer(t, id);
  size_t i;
  if (t->closing) return RF_TRANSPORT_ECLOSING;
  if (p == NULL) return RF_TRANSPORT_ENOPEER;
  for (i = 0; t->peers[i] != p; i++) continue;
  t->peers[i] = t->peers[--t->n_peers];
  if (t->auto_in) t->max_in = DEF_IN_PER_NODE * (t->n_peers + 1);
  p->removed = 1; /* out_drop reports it down but does not redial */
  if (p->conn != NULL) out_drop(p->conn, "removed", UV_ECANCELED);
  uv_close((uv_handle_t *)&p->timer, on_timer_closed); /* frees p */
  tlog(t, RF_LOG_DEBUG, "peer %" PRIu64 " removed", id);
  return 0;
}

static int dropped(peer *p, int rc) {
  p->dropped++;
  return rc;
}

int rf_transport_send(rf_transport *t, const raft_msg *m) {
  peer *p;
  outconn *c;
  uint8_t *frame;
  size_t len;
  int rc;

  if (t == NULL || m == NULL || m->from != t->self) return UV_EINVAL;
  if (t->closing) return RF_TRANSPORT_ECLOSING;
  if ((p = find_peer(t, m->to)) == NULL) return RF_TRANSPORT_ENOPEER;
  if (!p->up) return dropped(p, RF_TRANSPORT_EDOWN);
  c = p->conn;
  if ((rc = rf_codec_encode(t->cluster, m, &frame, &len)) < 0)
    return dropped(p, rc);
  if (len - RF_FRAME_HEADER > t->max_frame) rc = RF_TRANSPORT_ETOOBIG;
  else if (c->queued + len > t->queue_bound) rc = RF_TRANSPORT_EFULL;
  if (rc < 0) {
    free(frame);
    return dropped(p, rc);
  }
  if (c->tls != NULL) { /* the records come back through out_write */
    rc = rf_tls_write(c->tls, frame, len);
    free(frame);
  } else {
    rc = out_write(c, frame, len);
  }
  if (rc < 0) return dropped(p, rc);
  p->sent++;
  rf_metrics_peer_msg(m->to, (int)m->type, 1);
  return 0;
}

int rf_transport_connected(const rf_transport *t, uint64_t id) {
  const peer *p = find_peer(t, id);
  return p != NULL && p->up;
}

int rf_transport_peer_info(const rf_transport *t, uint64_t id,
                           rf_peer_info *info) {
  const peer *p = find_peer(t, id);
  if (p == NULL) return RF_TRANSPORT_ENOPEER;
  info->connected = p->up;
  info->queued_bytes = p->conn != NULL ? p->conn->queued : 0;
  info->sent = p->sent;
  info->dropped = p->dropped;
  return 0;
}

int rf_transport_port(const rf_transport *t) { return t->port; }

int rf_transport_close(rf_transport *t, void (*done)(void *), void *ud) {
  if (t->closing) return RF_TRANSPORT_ECLOSING;
  t->closing = 1;
  t->done = done;
  t->done_ud = ud;
  uv_close((uv_handle_t *)&t->listener, on_handle_closed);
  uv_close((uv_handle_t *)&t->sweep, on_handle_closed);
  for (size_t i = 0; i < t->n_peers; i++) {
    peer *p = t->peers[i];
    if (p->conn != NULL) out_drop(p->conn, "close", 0);
    uv_close((uv_handle_t *)&p->timer, on_timer_closed); /* frees p */
  }
  t->n_peers = 0; /* each peer goes with its timer */
  while (t->in != NULL) in_close(t->in);
  return 0;
}

const char *rf_transport_strerror(int err) {
  switch (err) {
  case RF_TRANSPORT_EDOWN: return "peer not connected";
  case RF_TRANSPORT_EFULL: return "peer send queue full";
  case RF_TRANSPORT_ETOOBIG: return "frame over max_frame_bytes";
  case RF_TRANSPORT_ENOPEER: return "no such peer";
  case RF_TRANSPORT_ECLOSING: return "transport closing";
  default: return rf_strerror(err);
  }
}
