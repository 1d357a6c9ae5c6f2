/*
** membership.h -- the runtime follows the membership (docs/membership.md).
**
** One per node.  It decides at start which membership the node has (the
** data directory's stored one, else the config's `nodes` for a first start,
** or none for a node that joins), keeps the address book (rafting/members.h)
** in step with the CONF entries the node appends, keeps the transport's
** peers equal to the members of the configuration in use, tells removed
** followers they were removed once it is committed (the leader's
** "farewell" append), and reports this node's own removal once it sees it
** applied.
**
** The rest of the node reads addresses through rf_membership_config(): a
** view of the file's config whose `nodes` are the address book, so that
** forwarding, GET /cluster, /status and TLS name checks use the addresses
** the log carries.  The view and the book are owned here and change as CONF
** entries arrive; pointers into them are valid until the next call that
** changes the book (saved, blob, learn).
*/
#ifndef RAFTING_MEMBERSHIP_H
#define RAFTING_MEMBERSHIP_H

#include <stddef.h>
#include <stdint.h>

#include "rafting/buf.h"
#include "rafting/config.h"
#include "rafting/driver.h"
#include "rafting/members.h"
#include "rafting/transport.h"

typedef struct rf_membership rf_membership;

typedef struct rf_membership_opts {
  const rf_config *cfg;  /* the config file's; must outlive the membership */
  uint64_t id;
  const char *data_dir;  /* NULL: memory storage (nothing stored) */
  int join;              /* --join: needs an empty data directory */
  const char *peer;      /* --peer / --http: this node's addresses, or NULL */
  const char *http;
  /* This node was removed by a configuration it applied at index. */
  void (*removed)(void *ud, uint64_t index);
  void *ud;
} rf_membership_opts;

/* Before the storage opens.  0, or RF_ECONFIG / RF_ESTORAGE with err[]
** saying what is wrong (a --join into a used directory, no address for
** this node, a corrupt members file). */
int rf_membership_open(const rf_membership_opts *o, rf_membership **out,
                       char *err, size_t errlen);
void rf_membership_free(rf_membership *m);

/* The effective config: the file's, with nodes = the address book. */
const rf_config *rf_membership_config(const rf_membership *m);
/* The bootstrap voters for raft_config.voters (none for a joined node). */
const uint64_t *rf_membership_boot(const rf_membership *m, size_t *n);
const rf_members *rf_membership_book(const rf_membership *m);

/* Once the storage opened (the directory exists): write DIR/members if it
** changed.  0, or a negative code with err[]. */
int rf_membership_store(rf_membership *m, char *err, size_t errlen);
/* The restored log: the addresses its CONF entries carry. */
void rf_membership_restore(rf_membership *m, const raft_restore *rs);
/* The driver and transport are up: follow the configuration from now. */
void rf_membership_attach(rf_membership *m, rf_driver *d, rf_transport *t);

/* Entries this node appends (the driver's save step). */
void rf_membership_saved(rf_membership *m, const raft_entry *e, size_t n);
/* After each driver run: peers, removal, the file. */
void rf_membership_sync(rf_membership *m);
/* Every tick: farewells to removed followers. */
void rf_membership_tick(rf_membership *m);
/* A peer message: 1 when it was a removed follower's answer to a farewell
** (consumed here), 0 for the driver. */
int rf_membership_peer_msg(rf_membership *m, const raft_msg *msg);
/* The transport heard a hello from a node it has no address for. */
void rf_membership_learn(rf_membership *m, uint64_t id, const char *host,
                         int port);

/* 1 when the peer connection to id is up (0 before attach or for NULL m). */
int rf_membership_connected(const rf_membership *m, uint64_t id);

/* REST: the context of a change to `next` (every member's addresses, with
** extra's, when not NULL, taking precedence): 0 or RF_ENOMEM. */
int rf_membership_context(const rf_membership *m, const raft_conf *next,
                          const rf_member *extra, rf_buf *out);
/* The member of conf (not cand itself) already using cand's peer or HTTP
** address, or RAFT_NONE. */
uint64_t rf_membership_clash(const rf_membership *m, const raft_conf *conf,
                             const rf_member *cand);

/* Snapshot hooks (the membership blob stored with a snapshot): the
** addresses of conf's members; and the blob of a restored or received
** snapshot (0, or RF_EINVAL for bytes that do not decode). */
int rf_membership_blob(const rf_membership *m, const raft_conf *conf,
                       rf_buf *out);
int rf_membership_blob_restore(rf_membership *m, const uint8_t *p, size_t len);
/* The same as the snapshot side's hooks take them (ud: the membership):
** the blob for a snapshot at index (the members of the configuration
** there, rf_driver_conf_at), and a restored or installed snapshot's blob
** (len 0: none; bytes that do not decode are logged and ignored). */
int rf_membership_blob_at(void *ud, uint64_t index, rf_buf *out);
void rf_membership_blob_restored(void *ud, const uint8_t *blob, size_t len);

#endif
