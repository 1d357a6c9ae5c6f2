/*
** handover.c -- leadership transfer and drain before a stop (see
** handover.h).
**
** Neither outcome raises an event (a transfer shows only in who leads,
** the last answer in a count), so a timer polls each tick: first until
** another node leads (a leader that started a transfer), then until no
** request is in flight.  Each phase has its own deadline.
*/
#include <stdlib.h>

#include "handover.h"
#include "rafting/driver.h"
#include "rafting/log.h"

enum { HANDING, DRAINING };

struct rf_handover {
  uv_timer_t timer;
  rf_node *node;
  uint64_t self;
  uint64_t to;          /* the transfer's target */
  uint64_t election_ms; /* one election timeout: the drain's bound */
  uint64_t deadline;    /* of the current phase */
  int phase;
  int moved;
  void (*done)(void *ud, int moved);
  void *ud;
};

static void on_closed(uv_handle_t *h) {
  rf_handover *ho = h->data;
  void (*done)(void *, int) = ho->done;
  void *ud = ho->ud;
  int moved = ho->moved;
  free(ho);
  done(ud, moved);
}

static void finish(rf_handover *ho) {
  uv_timer_stop(&ho->timer);
  uv_close((uv_handle_t *)&ho->timer, on_closed);
}

static void drain(rf_handover *ho, uint64_t now) {
  ho->phase = DRAINING;
  ho->deadline = now + ho->election_ms;
}

uint64_t rf_successor(const raft_status *st,
                      int (*up)(const void *ud, uint64_t id), const void *ud) {
  uint64_t best = 0, match = 0;
  for (size_t i = 0; i < st->n_peers; i++) {
    const raft_peer_status *p = &st->peers[i];
    if (p->id == st->id || !p->voter || !p->active || !up(ud, p->id))
      continue;
    if (best == 0 || p->match > match) {
      best = p->id;
      match = p->match;
    }
  }
  return best;
}

static int node_up(const void *ud, uint64_t id) {
  return rf_node_peer_connected(ud, id);
}

/* HANDING: 1 while the transfer may still happen. */
static int handing(rf_handover *ho, uint64_t now) {
  uint64_t leader = rf_driver_leader(rf_node_driver(ho->node));
  if (leader != 0 && leader != ho->self) {
    rf_log(RF_INFO, "handed leadership over to node %llu",
           (unsigned long long)leader);
    ho->moved = 1;
  } else if (!rf_node_peer_connected(ho->node, ho->to)) {
    rf_log(RF_WARN, "node %llu went away before it took over; stopping",
           (unsigned long long)ho->to);
  } else if (now >= ho->deadline) {
    rf_log(RF_WARN, "no other node took over leadership in time; stopping");
  } else {
    return 1;
  }
  drain(ho, now);
  return 0;
}

static void on_tick(uv_timer_t *t) {
  rf_handover *ho = t->data;
  uint64_t now = uv_now(t->loop);
  size_t n;
  if (ho->phase == HANDING && handing(ho, now)) return;
  if ((n = rf_node_in_flight(ho->node)) == 0) {
    finish(ho);
  } else if (now >= ho->deadline) {
    rf_log(RF_WARN, "stopping with %zu request(s) still in flight", n);
    finish(ho);
  }
}

void rf_handover_cancel(rf_handover *ho) {
  if (!uv_is_closing((uv_handle_t *)&ho->timer)) finish(ho);
}

int rf_handover_start(uv_loop_t *loop, rf_node *node, const rf_config *cfg,
                      void (*done)(void *ud, int moved), void *ud,
                      rf_handover **out) {
  rf_driver *drv = rf_node_driver(node);
  raft_status st;
  rf_handover *ho;
  uint64_t tick = cfg->tick_ms > 0 ? (uint64_t)cfg->tick_ms : 10, to = 0;
  int rc;
  rf_driver_status(drv, &st);
  if (st.role == RAFT_LEADER && !rf_driver_failed(drv))
    to = rf_successor(&st, node_up, node);
  if ((ho = calloc(1, sizeof(*ho))) == NULL) return UV_ENOMEM;
  if ((rc = uv_timer_init(loop, &ho->timer)) < 0) {
    free(ho);
    return rc;
  }
  ho->timer.data = ho;
  ho->node = node;
  ho->self = st.id;
  ho->to = to;
  ho->election_ms = tick * (uint64_t)cfg->election_ticks;
  ho->done = done;
  ho->ud = ud;
  *out = ho;
  rf_node_drain(node);
  if (to != 0 && rf_driver_transfer(drv, to) == 0) {
    rf_log(RF_INFO, "stopping: handing leadership over to node %llu",
           (unsigned long long)to);
    ho->phase = HANDING;
    ho->deadline = uv_now(loop) + 2 * ho->election_ms;
  } else {
    drain(ho, uv_now(loop)); /* a follower, or nobody to take over */
  }
  uv_timer_start(&ho->timer, on_tick, tick, tick);
  return 0;
}
