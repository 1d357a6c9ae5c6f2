/*
** bootscript.h -- the config's `commands` file as the cluster's first
** deployed script.
**
** The file is no longer run by the node that reads it: the first leader
** proposes it (script.seed, named by the file's base name) and every
** replica installs it when it applies that entry, like any PUT /scripts.
** A seed is a no-op once any script entry applied, so it is safe to
** propose on every election until then, and a deliberate DELETE stays.
** A node whose file differs from the replicated version says so (both
** digests) and runs the replicated one.
**
** Owned by the node; reads the sm it is given, never frees it.
*/
#ifndef RAFTING_BOOTSCRIPT_H
#define RAFTING_BOOTSCRIPT_H

#include <stddef.h>

#include "rafting/driver.h"
#include "rafting/sm.h"

typedef struct rf_bootscript rf_bootscript;

/* Read and check the file against the built-in commands: 0 and *out
** (NULL when path is NULL); or RF_ESCRIPT with a message naming the file
** and line in err. */
int rf_bootscript_open(const char *path, rf_sm *sm, rf_bootscript **out,
                       char *err, size_t errlen);
void rf_bootscript_free(rf_bootscript *b); /* NULL is fine */

/* After a driver run: on a leader of a cluster without scripts yet,
** propose the seed (once per term); once the node applied its restored
** log (ready), warn when the replicated version differs from the file. */
void rf_bootscript_sync(rf_bootscript *b, rf_driver *drv, int ready);

#endif
