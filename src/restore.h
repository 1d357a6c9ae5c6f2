/*
** restore.h -- `rafting restore`: a new data directory from a backup.
**
**   rafting restore --snapshot FILE --config FILE --node ID [--data DIR]
**
** Checks FILE whole (format, checksum, key count), refuses a data directory
** that exists and is not empty, and writes DIR/snap/<index>-<term>.snap:
** the backup's state, index and term, with a configuration in which node
** ID is the only voter (the backup's own configuration and membership are
** dropped).  Started with `rafting --config FILE --node ID`, the node
** elects itself in a new one-member cluster and serves the restored state;
** its log continues after the snapshot's index, in a term above the
** snapshot's.  DIR defaults to the config's storage for ID.
**
** Exit status: 0 restored; 1 the snapshot file is unreadable or corrupt;
** 2 usage or configuration error; 3 the data directory is not empty or
** cannot be written.  docs/operations.md walks through a recovery.
*/
#ifndef RAFTING_RESTORE_H
#define RAFTING_RESTORE_H

enum {
  RF_RESTORE_OK = 0,
  RF_RESTORE_BADSNAP = 1,
  RF_RESTORE_USAGE = 2,
  RF_RESTORE_BADDIR = 3
};

/* argv[0] is "restore".  Returns the exit status above. */
int rf_restore_main(int argc, char **argv);

#endif
