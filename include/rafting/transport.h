/*
** transport.h -- the peer transport: Raft messages over TCP on a libuv loop.
**
** Each node dials every peer and sends on that outbound connection only;
** peers may be added and removed while it runs (membership changes), and
** a dialer's first frame, its hello, names it and its listen address so
** the receiver can learn a node it has no address for (learn callback);
** connections accepted on the listener are only read.  Frames are a 4-byte
** big-endian length + a packed rafting.Envelope (rafting/codec.h).  An
** outbound connection that fails or drops is redialed after an exponential
** backoff with jitter, capped.  A bad inbound frame (over max_frame_bytes,
** does not unpack, another cluster, not addressed to this node, from an
** unknown node) closes that connection with a log line; nothing else stops.
**
** Sending never blocks: rf_transport_send() encodes and queues the frame
** on the peer's connection, or drops it and says why (peer down, queue over
** send_queue_bytes).  The Raft core retransmits what matters.
**
** With tls_server and tls_client set, every connection is mutual TLS: an
** outbound one is up only once the server proved it is the node dialed;
** an inbound one whose certificate names no peer is closed, and its frames
** whose from is not the certified id are dropped with a log line.
**
** Memory: the transport copies the config (strings, peers) at start.  A
** message passed to recv is owned by the transport and valid only during
** the callback.  rf_transport_send() copies m (encodes it) before return.
** The transport frees itself once every handle closed after
** rf_transport_close(); its done callback runs last.
**
** Callbacks run on the loop thread; recv and peer_state may call
** rf_transport_send() and rf_transport_close(), log must not call into the
** transport.  None runs after rf_transport_close() except done.
**
** Errors are negative: libuv codes, the RF_TRANSPORT_E* aliases below, or
** RF_CODEC_E* from encoding; a callback is never called for a call that
** returned an error.
*/
#ifndef RAFTING_TRANSPORT_H
#define RAFTING_TRANSPORT_H

#include "rafting/error.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rafting/raft.h"

enum {
  RF_TRANSPORT_EDOWN = UV_ENOTCONN,    /* no connection to the peer now */
  RF_TRANSPORT_EFULL = UV_ENOBUFS,     /* peer's send queue over its bound */
  RF_TRANSPORT_ETOOBIG = UV_EMSGSIZE,  /* frame over max_frame_bytes */
  RF_TRANSPORT_ENOPEER = UV_ENOENT,    /* m->to is not a configured peer */
  RF_TRANSPORT_ECLOSING = UV_ECANCELED /* rf_transport_close() was called */
};

enum { RF_LOG_DEBUG = 0, RF_LOG_INFO, RF_LOG_WARN, RF_LOG_ERROR };

typedef struct rf_peer_addr {
  uint64_t id;      /* > 0, not the node's own id */
  const char *host; /* numeric IPv4/IPv6, or "localhost" */
  int port;
} rf_peer_addr;

typedef struct rf_transport_config {
  const char *cluster;       /* carried in and checked on every frame */
  uint64_t self;             /* this node's id, > 0 */
  const char *listen_host;   /* numeric IP or "localhost"; NULL: 127.0.0.1 */
  int listen_port;           /* 0 picks a free port: rf_transport_port() */
  const rf_peer_addr *peers; /* the other nodes */
  size_t n_peers;
  size_t max_frame_bytes;    /* envelope bytes per frame, < 2 GiB; 0: 4 MiB */
  size_t send_queue_bytes;   /* per peer, >= 4 + max frame; 0: 8 MiB */
  unsigned backoff_min_ms;   /* redial delay, doubling per failure and
                                jittered into [d/2, d]; 0: 50 */
  unsigned backoff_max_ms;   /* cap; 0: 1000 */
  uint64_t seed;             /* backoff jitter */
  /* Inbound limits (a peer may be buggy or forged): connections open at
  ** once, 0: 4 per node; a connection must deliver a whole frame within
  ** first_frame_ms of being accepted (0: 5000) and finish every frame it
  ** starts within frame_ms (0: 10000); bytes buffered for partial frames
  ** over all inbound connections, >= 4 + max frame (0: 32 MiB or one
  ** frame).  Over any of them the connection is closed and logged. */
  size_t max_inbound;
  unsigned first_frame_ms, frame_ms;
  size_t inbound_buffer_bytes;
  void *ud;                  /* passed to every callback */
  /* A message addressed to this node; valid only during the call. */
  void (*recv)(void *ud, const raft_msg *m);
  /* The outbound connection to peer came up (1) or went down (0). */
  void (*peer_state)(void *ud, uint64_t peer, int connected);
  /* One event worth a log line, without newline; may be NULL. */
  void (*log)(void *ud, int level, const char *msg);
  /* A hello from node id, which is no peer, says it listens on host:port
  ** (host valid only during the call); may be NULL: then a connection from
  ** a node that is no peer is closed.  The callback may add the peer. */
  void (*learn)(void *ud, uint64_t id, const char *host, int port);
  /* "host:port" this node's hellos say it listens on; NULL: none. */
  const char *advertise;
  /* Mutual TLS (rafting/tls.h), both or neither; not owned, must outlive
  ** the transport.  A peer's certificate must name "node<ID>". */
  struct rf_tls_ctx *tls_server; /* made with RF_TLS_VERIFY_PEER */
  struct rf_tls_ctx *tls_client;
} rf_transport_config;

typedef struct rf_transport rf_transport;

typedef struct rf_peer_info {
  int connected;
  size_t queued_bytes;  /* handed to uv_write, not yet completed */
  uint64_t sent;        /* frames queued since start */
  uint64_t dropped;     /* frames refused: down, full or too big */
} rf_peer_info;

/*
** Bind and listen, then start dialing every peer.  On success *out is the
** transport.  On error nothing is running and *out is NULL (handles already
** opened close on the loop's next run).
*/
int rf_transport_start(uv_loop_t *loop, const rf_transport_config *cfg,
                       rf_transport **out);

/* Dial a new peer, or one at a new address (its connection is closed and
** redialed); the same address again is a no-op.  0, UV_EINVAL (self, id 0,
** a host that is not numeric) or RF_TRANSPORT_ECLOSING. */
int rf_transport_add_peer(rf_transport *t, uint64_t id, const char *host,
                          int port);
/* Forget a peer: its connection closes (queued frames are dropped, the
** peer_state callback reports it down) and sending to it fails with
** RF_TRANSPORT_ENOPEER; a frame from it closes the inbound connection.
** 0 or RF_TRANSPORT_ENOPEER. */
int rf_transport_remove_peer(rf_transport *t, uint64_t id);

/* Whether hellos from nodes that are no peer reach learn (and, with TLS,
** whether a certificate naming no peer may say hello first, instead of
** being refused at once).  On at start when learn is set; a node turns it
** on only while it has no configuration (a joining node). */
void rf_transport_learning(rf_transport *t, int on);

/* Greet peer id with an empty hello frame (on) instead of a Hello: nodes
** older than Hello close a connection that starts with one, and only a
** node with no configuration learns from it.  From its next connection
** on.  0 or RF_TRANSPORT_ENOPEER. */
int rf_transport_legacy_hello(rf_transport *t, uint64_t id, int on);

/* Encode m and queue it to m->to; see the RF_TRANSPORT_E* codes. */
int rf_transport_send(rf_transport *t, const raft_msg *m);

int rf_transport_connected(const rf_transport *t, uint64_t peer);
int rf_transport_peer_info(const rf_transport *t, uint64_t peer,
                           rf_peer_info *info);

/* The bound listen port (useful with listen_port 0). */
int rf_transport_port(const rf_transport *t);

/*
** Close every handle; done(ud) runs once all close callbacks ran, after t
** is freed.  Queued frames are dropped.  Returns RF_TRANSPORT_ECLOSING (and
** done will not run for this call) when already closing.
*/
int rf_transport_close(rf_transport *t, void (*done)(void *ud), void *ud);

const char *rf_transport_strerror(int err);

#endif
