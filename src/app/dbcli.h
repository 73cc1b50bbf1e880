/* dbcli.h — `kvchat db copy`: move a store from one database to another.
 *
 *   kvchat db copy (--from URL | --data DIR) --to URL
 *
 * Copies every record of the source store (a SQLite file, "sqlite:PATH"
 * or DIR/kvchat.db for --data DIR) into the destination (usually a
 * PostgreSQL URL), which must be empty (see store_copy.h for what is
 * copied), and prints the counts. The server must not be running on the
 * source meanwhile.
 */
#ifndef KVCHAT_APP_DBCLI_H
#define KVCHAT_APP_DBCLI_H

/* argv[0] is "db". Returns the process exit status: 0 done, 1 failed, 2
 * bad usage. */
int dbcli_main(int argc, char **argv);

#endif
