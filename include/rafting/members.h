/*
** members.h -- the address book: node id -> peer and HTTP addresses.
**
** The core knows members by id only; the runtime needs to know where they
** listen.  Addresses come, newest first wins, from: the node's own --peer /
** --http, the context of every CONF entry this node appends (the leader
** writes there the addresses of every member of the resulting
** configuration, so each entry is self-contained), a snapshot's membership
** blob, the stored membership file (DIR/members), and at a first start the
** config's `nodes` list.  docs/membership.md says why.
**
** The book is a fixed-size value (no allocation, copy by assignment); the
** node owns one.  It also keeps the bootstrap voters: the ids the config
** named when this data directory was created (none for a node that
** joined), which the core uses until its log or a snapshot says otherwise.
**
** The encoding (rf_members_encode, the CONF context and the snapshot blob):
** a version byte (1), a count byte, then per member: 8-byte little-endian
** id, then peer and HTTP address each as a length byte, the host, and a
** 2-byte little-endian port.  The file (rf_members_store) is text, one
** line per member, so an operator can read it.
*/
#ifndef RAFTING_MEMBERS_H
#define RAFTING_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#include "rafting/buf.h"
#include "rafting/error.h"
#include "rafting/raft.h"

#define RF_MEMBERS_HOST 64    /* a numeric IPv6 (46) or "localhost", '\0' */
#define RF_MEMBERS_MAX (2 * RAFT_MAX_NODES) /* members plus some spares */
#define RF_MEMBERS_FILE "members" /* in the data directory */

typedef struct rf_member {
  uint64_t id;
  char peer_host[RF_MEMBERS_HOST];
  int peer_port;
  char http_host[RF_MEMBERS_HOST];
  int http_port;
} rf_member;

typedef struct rf_members {
  size_t n;
  rf_member m[RF_MEMBERS_MAX];
  size_t n_boot;                   /* bootstrap voters */
  uint64_t boot[RAFT_MAX_NODES];
} rf_members;

void rf_members_init(rf_members *b);
const rf_member *rf_members_get(const rf_members *b, uint64_t id);
/* Add or replace m, now the most recently set: 1 when the book changed
** (contents or order), 0 when m was already the newest entry, RF_EINVAL for a zero id or a bad host or port.
** A full book drops the entry set longest ago (a bootstrap voter last). */
int rf_members_set(rf_members *b, const rf_member *m);
/* Fill m from "host:port" strings: 0 or RF_EINVAL with why[] filled. */
int rf_member_parse(rf_member *m, uint64_t id, const char *peer,
                    const char *http, char *why, size_t whylen);
void rf_members_remove(rf_members *b, uint64_t id);
/* The id of another member (not id) already using m's peer or HTTP
** address, or RAFT_NONE. */
uint64_t rf_members_clash(const rf_members *b, const rf_member *m);

/* Append the addresses of every member of conf the book knows to out:
** 0, or RF_ENOMEM. */
int rf_members_encode(const rf_members *b, const raft_conf *conf, rf_buf *out);
/* Decode bytes into out[0..*n) (at most cap): 0, or RF_EINVAL. */
int rf_members_decode(const uint8_t *p, size_t len, rf_member *out,
                      size_t cap, size_t *n);
/* Decode and set every member: the number that changed, or RF_EINVAL (the
** book unchanged). */
int rf_members_merge(rf_members *b, const uint8_t *p, size_t len);

/* DIR/members, written atomically (a temporary file, fsync, rename, fsync
** of the directory): 0, or a negative code with err[] saying what failed. */
int rf_members_store(const rf_members *b, const char *dir, char *err,
                     size_t errlen);
/* Read DIR/members into b: 0, RF_ENONE when there is no such file, or
** RF_ECORRUPT / -errno with err[] naming the file and the line. */
int rf_members_load(rf_members *b, const char *dir, char *err, size_t errlen);

#endif
