/* A minimal Windows SQLite host for the smoke test under Wine: loads an
 * extension with no entry point named (as the sqlite3 shell's .load does),
 * closes that connection, opens a URI through the loaded VFS and prints the
 * rows of each query in turn, columns separated by '|'.
 *
 *   smoke_host.exe LIBRARY URI SQL [SQL | --until TEXT SQL]...
 *
 * `--until TEXT SQL` runs SQL again (every 50 ms, for at most 120 s) until
 * the first column of its first row is TEXT, then prints that row; it fails
 * past the bound (hydration's progress reaching 100.0, for instance).
 *
 * Built by scripts/wine-smoke.sh with mingw-w64 and the SQLite amalgamation. */
#include <stdio.h>
#include <string.h>
#include <windows.h>
#include "sqlite3.h"

/* Runs `sql`, printing its rows when `until` is NULL. With `until`, prints
 * nothing and returns 0 only if the first column of the first row is
 * `until` (2 when it is not yet, 1 on an error). */
static int run(sqlite3 *db, const char *sql, const char *until) {
    sqlite3_stmt *stmt = NULL;
    int rc, i, first = 1, matched = 0;

    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare %s: %s\n", sql, sqlite3_errmsg(db));
        return 1;
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (until) {
            const unsigned char *text = sqlite3_column_text(stmt, 0);
            if (first && text && strcmp((const char *)text, until) == 0) matched = 1;
            first = 0;
            continue;
        }
        for (i = 0; i < sqlite3_column_count(stmt); i++) {
            const unsigned char *text = sqlite3_column_text(stmt, i);
            printf("%s%s", i ? "|" : "", text ? (const char *)text : "");
        }
        printf("\n");
    }
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "step %s: %s\n", sql, sqlite3_errmsg(db));
        sqlite3_finalize(stmt);
        return 1;
    }
    sqlite3_finalize(stmt);
    return until && !matched ? 2 : 0;
}

int main(int argc, char **argv) {
    sqlite3 *boot = NULL, *db = NULL;
    char *err = NULL;
    int rc, i, tries;

    if (argc < 4) {
        fprintf(stderr, "usage: %s LIBRARY URI SQL [SQL | --until TEXT SQL]...\n", argv[0]);
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
    for (i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--until") == 0) {
            if (i + 2 >= argc) {
                fprintf(stderr, "--until needs TEXT and SQL\n");
                return 2;
            }
            for (tries = 0; (rc = run(db, argv[i + 2], argv[i + 1])) == 2 && tries < 2400; tries++) {
                Sleep(50);
            }
            if (rc != 0) {
                if (rc == 2) fprintf(stderr, "%s never gave %s\n", argv[i + 2], argv[i + 1]);
                return 1;
            }
            printf("%s\n", argv[i + 1]);
            i += 2;
        } else if (run(db, argv[i], NULL) != 0) {
            return 1;
        }
    }
    sqlite3_close(db);
    printf("sqlite %s\n", sqlite3_libversion());
    return 0;
}
