/* A minimal Windows SQLite host for the smoke test under Wine: loads an
 * extension with no entry point named (as the sqlite3 shell's .load does),
 * closes that connection, opens a URI through the loaded VFS and prints the
 * rows of one query, columns separated by '|'.
 *
 *   smoke_host.exe LIBRARY URI SQL
 *
 * Built by scripts/wine-smoke.sh with mingw-w64 and the SQLite amalgamation. */
#include <stdio.h>
#include "sqlite3.h"

int main(int argc, char **argv) {
    sqlite3 *boot = NULL, *db = NULL;
    sqlite3_stmt *stmt = NULL;
    char *err = NULL;
    int rc, i;

    if (argc != 4) {
        fprintf(stderr, "usage: %s LIBRARY URI SQL\n", argv[0]);
        return 2;
    }
    if (sqlite3_open(":memory:", &boot) != SQLITE_OK) {
        fprintf(stderr, "open :memory:: %s\n", sqlite3_errmsg(boot));
        return 1;
    }
    sqlite3_enable_load_extension(boot, 1);
    if (sqlite3_load_extension(boot, argv[1], NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "load %s: %s\n", argv[1], err ? err : "?");
        return 1;
    }
    sqlite3_close(boot);

    rc = sqlite3_open_v2(argv[2], &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "open %s: %s\n", argv[2], sqlite3_errmsg(db));
        return 1;
    }
    if (sqlite3_prepare_v2(db, argv[3], -1, &stmt, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        for (i = 0; i < sqlite3_column_count(stmt); i++) {
            const unsigned char *text = sqlite3_column_text(stmt, i);
            printf("%s%s", i ? "|" : "", text ? (const char *)text : "");
        }
        printf("\n");
    }
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "step: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    printf("sqlite %s\n", sqlite3_libversion());
    return 0;
}
