/*
** conf.h -- membership configurations (raft_conf) for the core.
**
** Pure value helpers: a raft_conf is a fixed-size value, copied by
** assignment; nothing here allocates.  The encoding is raft.h's.
*/
#ifndef RAFTING_CORE_CONF_H
#define RAFTING_CORE_CONF_H

#include "rafting/raft.h"

/* The configuration that change c makes of *cur, into *out: RAFT_OK, or
** RAFT_EINVAL when it does not apply (see raft_propose_conf). */
int rconf_apply(const raft_conf *cur, const raft_conf_change *c,
                raft_conf *out);
/* Members (voters and learners) in all. */
size_t rconf_members(const raft_conf *c);
/* Voters of a that are not voters of b, and the other way round: a
** one-server change differs in at most one voter in all. */
size_t rconf_voter_diff(const raft_conf *a, const raft_conf *b);

#endif
