#ifndef CSQLITEPAGECACHE_H
#define CSQLITEPAGECACHE_H

#include "sqlite_nio_sqlite3.h"

/// Makes SQLite's own page cache the process's, wrapped so that a page renamed for a moment
/// to the lock page's number (as `balance_nonroot` does when it swaps two pages' numbers) is
/// kept under a key no page has instead. Returns SQLite's code: `SQLITE_MISUSE` once SQLite
/// is initialised, when the cache can no longer be chosen. Call before any connection opens.
int cportslice_sqlite_use_keyed_page_cache(void);

/// Whether the wrapped cache is the process's (it was chosen before SQLite was initialised).
int cportslice_sqlite_keyed_page_cache_in_use(void);

/// The wrapper's methods, for tests that check its keys through SQLite's own interface.
const sqlite3_pcache_methods2 *cportslice_sqlite_keyed_page_cache_methods(void);

#endif
