// SQLite's default page cache (pcache1) behind a thin wrapper that changes one key.
//
// Why: when a B-tree page splits, `balance_nonroot` swaps two pages' numbers through a
// temporary one, the number of the page that holds the lock byte (PENDING_BYTE, 1 GiB into
// the file: page 1,048,577 with 1 KiB pages), which no page of the file ever has. pcache1
// remembers the highest key it has held, and every commit truncates the cache to the file's
// size; with that key held once, the truncation scans the whole hash table (about one bucket
// per cached page, tens of thousands with the store's 64 MiB cache) instead of the few
// buckets past the end. That scan was 7.4% of the SQLite writer's time in `bench alloc`
// through HTTP. Here the lock page's number is kept under key 0, which SQLite never uses
// (page numbers start at 1), so the highest key stays within the file. SQLite has no
// setting for it; a cache of its own is the documented way to change how pages are kept.
#include <stdlib.h>
#include "CSQLitePageCache.h"

/// SQLite's default cache, which every call goes on to.
static sqlite3_pcache_methods2 base;
static int in_use = 0;

/// One cache of the default kind, and the key it must not see.
struct keyed_cache {
    sqlite3_pcache *base;
    unsigned int lock_page;
};

static unsigned int key(const struct keyed_cache *cache, unsigned int page) {
    return page == cache->lock_page ? 0 : page;
}

static int keyed_init(void *argument) { return base.xInit(base.pArg); }

static void keyed_shutdown(void *argument) {
    if (base.xShutdown) { base.xShutdown(base.pArg); }
}

static sqlite3_pcache *keyed_create(int page_size, int extra_size, int purgeable) {
    struct keyed_cache *cache = malloc(sizeof *cache);
    if (!cache) { return NULL; }
    cache->base = base.xCreate(page_size, extra_size, purgeable);
    if (!cache->base) {
        free(cache);
        return NULL;
    }
    // As SQLite computes the temporary number: PENDING_BYTE / page size + 1.
    cache->lock_page = 0x40000000u / (unsigned int)page_size + 1;
    return (sqlite3_pcache *)cache;
}

static struct keyed_cache *keyed(sqlite3_pcache *cache) { return (struct keyed_cache *)cache; }

static void keyed_cachesize(sqlite3_pcache *cache, int pages) { base.xCachesize(keyed(cache)->base, pages); }

static int keyed_pagecount(sqlite3_pcache *cache) { return base.xPagecount(keyed(cache)->base); }

static sqlite3_pcache_page *keyed_fetch(sqlite3_pcache *cache, unsigned int page, int create) {
    return base.xFetch(keyed(cache)->base, key(keyed(cache), page), create);
}

static void keyed_unpin(sqlite3_pcache *cache, sqlite3_pcache_page *page, int discard) {
    base.xUnpin(keyed(cache)->base, page, discard);
}

static void keyed_rekey(sqlite3_pcache *cache, sqlite3_pcache_page *page, unsigned int old_page, unsigned int new_page) {
    base.xRekey(keyed(cache)->base, page, key(keyed(cache), old_page), key(keyed(cache), new_page));
}

static void keyed_truncate(sqlite3_pcache *cache, unsigned int limit) { base.xTruncate(keyed(cache)->base, limit); }

static void keyed_destroy(sqlite3_pcache *cache) {
    base.xDestroy(keyed(cache)->base);
    free(cache);
}

static void keyed_shrink(sqlite3_pcache *cache) { base.xShrink(keyed(cache)->base); }

static const sqlite3_pcache_methods2 keyed_methods = {
    .iVersion = 1,
    .pArg = NULL,
    .xInit = keyed_init,
    .xShutdown = keyed_shutdown,
    .xCreate = keyed_create,
    .xCachesize = keyed_cachesize,
    .xPagecount = keyed_pagecount,
    .xFetch = keyed_fetch,
    .xUnpin = keyed_unpin,
    .xRekey = keyed_rekey,
    .xTruncate = keyed_truncate,
    .xDestroy = keyed_destroy,
    .xShrink = keyed_shrink,
};

int cportslice_sqlite_use_keyed_page_cache(void) {
    if (in_use) { return SQLITE_OK; }
    int code = sqlite_nio_sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &base);
    if (code != SQLITE_OK) { return code; }
    code = sqlite_nio_sqlite3_config(SQLITE_CONFIG_PCACHE2, &keyed_methods);
    if (code == SQLITE_OK) { in_use = 1; }
    return code;
}

int cportslice_sqlite_keyed_page_cache_in_use(void) { return in_use; }

const sqlite3_pcache_methods2 *cportslice_sqlite_keyed_page_cache_methods(void) { return &keyed_methods; }
