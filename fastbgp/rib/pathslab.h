/* Blocks for the compiled RIB's per-prefix path arrays (fastbgp/rib/_rib.pyx).

   Why not malloc/realloc: a prefix's array grows one path at a time as
   peers announce it (20 peers with full tables: a dozen resizes per
   prefix, 12M for one table), and glibc's realloc of such small blocks
   rarely grows in place -- it allocates, copies, frees and consolidates
   its bins, about a fifth of the daemon's CPU at bench/scale.py's P8.  It
   also puts an 8-octet header on every block and rounds it up to 16.

   Here every array of ``cap`` paths (2..PS_MAX_CAP) comes from a class of
   blocks of exactly cap * PS_PATH octets, cut from 1 MiB chunks aligned
   to their size, so the chunk of any block is its address rounded down.
   A chunk is a mapping of its own (mmap): blocks are cut from its start
   as needed, so only the pages they reach are resident, and an empty
   chunk goes straight back to the system (munmap) -- heap blocks of that
   size, aligned, left glibc's heap fragmented (22 octets per path at P8
   against 19 with realloc).
   A chunk keeps its own list of freed blocks (linked through their first
   octets, read and written with memcpy: blocks are not pointer-aligned)
   and a bump index for those never handed out.  Chunks with a free block
   are on their class's doubly-linked ``room`` list; a chunk whose last
   block is freed becomes a spare (below) or goes back to the system.  An array past PS_MAX_CAP
   (a route server's prefix with more than 64 paths) is a chunk of its own,
   sized to it, holding one block.  So ps_free needs no size: the chunk
   header of any block says what it is, and a block may be larger than its
   paths need (a shrink that found no memory keeps the old block).

   Costs: alloc and free are a handful of instructions; a block's first
   word is read on reuse (one cache miss, as with any free list); a chunk
   costs three system calls to map and one to unmap, and up to PS_SPARE
   empty chunks are kept, pages and all, for reuse by any class: a table
   whose prefixes move from n to n + 1 paths empties class n's chunks
   while class n + 1 fills, and fresh mappings there would fault in every
   page again (rib_floor p8: 2.1 s instead of 1.6); one path coming and
   going at a class boundary takes and gives back a spare, no system
   call.  Memory: the pages the
   blocks reached; a class's partly used chunks, a few per class in a
   steady table; a table that shrinks leaves its chunks partly used until
   paths fill them again -- the same bound as glibc's fragmented heap --
   and at most PS_SPARE empty ones (16 MiB). */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define PS_CHUNK ((size_t)1 << 20)
#define PS_SPARE 16
#define PS_MAX_CAP 64
#define PS_PATH 15 /* sizeof(RibPath), checked by _rib.pyx */

typedef struct PsChunk {
    struct PsChunk *prev, *next; /* the class's room list */
    void *free;                  /* freed blocks of this chunk */
    uint32_t used;               /* blocks handed out */
    uint32_t bump;               /* blocks from this index on were never handed out */
    uint32_t nblocks;
    uint32_t bsize;
    uint32_t hw;                 /* octets from its start ever reached: resident */
} PsChunk;

/* The first block starts after the header, on a 16-octet boundary. */
#define PS_HDR ((sizeof(PsChunk) + 15) & ~(size_t)15)

typedef struct {
    PsChunk *room[PS_MAX_CAP + 1]; /* per capacity: chunks with a free block */
    PsChunk *spare;                /* empty chunks kept, linked through next */
    size_t nspare;
    size_t chunks;                 /* chunks held, spares included */
    size_t reached;                /* the chunks' ``hw``, summed */
} PathSlab;

/* A PS_CHUNK-aligned mapping of PS_CHUNK octets (heap memory elsewhere). */
static PsChunk *ps_map(void) {
#if defined(__linux__)
    char *p = (char *)mmap(NULL, 2 * PS_CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    size_t head;
    if (p == (char *)MAP_FAILED)
        return NULL;
    head = (PS_CHUNK - ((uintptr_t)p & (PS_CHUNK - 1))) & (PS_CHUNK - 1);
    if (head)
        munmap(p, head);
    munmap(p + head + PS_CHUNK, PS_CHUNK - head);
    return (PsChunk *)(p + head);
#else
    void *p;
    return posix_memalign(&p, PS_CHUNK, PS_CHUNK) ? NULL : (PsChunk *)p;
#endif
}

static void ps_unmap(PsChunk *c) {
#if defined(__linux__)
    munmap(c, PS_CHUNK);
#else
    free(c);
#endif
}

/* ``c`` reached ``end`` octets from its start. */
static void ps_reached(PathSlab *s, PsChunk *c, size_t end) {
    if (end > c->hw) {
        s->reached += end - c->hw;
        c->hw = (uint32_t)end;
    }
}

/* A chunk for blocks of ``bsize`` octets (``nblocks`` of them): a spare
   one or a new mapping. */
static PsChunk *ps_chunk(PathSlab *s, uint32_t bsize, uint32_t nblocks) {
    PsChunk *c = s->spare;
    if (c != NULL) {
        s->spare = c->next;
        s->nspare--;
    } else {
        c = ps_map();
        if (c == NULL)
            return NULL;
        s->chunks++;
        c->hw = 0;
        ps_reached(s, c, PS_HDR);
    }
    c->prev = c->next = NULL;
    c->free = NULL;
    c->used = 0;
    c->bump = 0;
    c->bsize = bsize;
    c->nblocks = nblocks;
    return c;
}

/* ``c`` is empty: kept as a spare or unmapped. */
static void ps_drop(PathSlab *s, PsChunk *c) {
    if (s->nspare < PS_SPARE) {
        c->next = s->spare;
        s->spare = c;
        s->nspare++;
        return;
    }
    s->reached -= c->hw;
    ps_unmap(c);
    s->chunks--;
}

static void ps_unlink(PathSlab *s, uint32_t cap, PsChunk *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        s->room[cap] = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void ps_push(PathSlab *s, uint32_t cap, PsChunk *c) {
    c->prev = NULL;
    c->next = s->room[cap];
    if (c->next)
        c->next->prev = c;
    s->room[cap] = c;
}

/* A block for ``cap`` paths, or NULL when memory is out. */
static void *ps_alloc(PathSlab *s, uint32_t cap) {
    PsChunk *c;
    void *p;
    if (cap > PS_MAX_CAP) {
        /* MAXP paths of 15 octets fit in one chunk. */
        c = ps_chunk(s, cap * PS_PATH, 1);
        if (c == NULL)
            return NULL;
        c->used = c->bump = 1;
        ps_reached(s, c, PS_HDR + c->bsize);
        return (char *)c + PS_HDR;
    }
    c = s->room[cap];
    if (c == NULL) {
        c = ps_chunk(s, cap * PS_PATH, (uint32_t)((PS_CHUNK - PS_HDR) / (cap * PS_PATH)));
        if (c == NULL)
            return NULL;
        ps_push(s, cap, c);
    }
    if (c->free != NULL) {
        p = c->free;
        memcpy(&c->free, p, sizeof(void *));
    } else {
        p = (char *)c + PS_HDR + (size_t)c->bump * c->bsize;
        c->bump++;
        ps_reached(s, c, PS_HDR + (size_t)c->bump * c->bsize);
    }
    if (++c->used == c->nblocks)
        ps_unlink(s, cap, c); /* full: off the room list */
    return p;
}

/* Give back a block of ps_alloc. */
static void ps_free(PathSlab *s, void *p) {
    PsChunk *c;
    uint32_t cap;
    if (p == NULL)
        return;
    c = (PsChunk *)((uintptr_t)p & ~(uintptr_t)(PS_CHUNK - 1));
    cap = c->bsize / PS_PATH;
    if (cap > PS_MAX_CAP) {
        ps_drop(s, c);
        return;
    }
    if (c->used == c->nblocks)
        ps_push(s, cap, c); /* it has room again */
    memcpy(p, &c->free, sizeof(void *));
    c->free = p;
    if (--c->used == 0) {
        ps_unlink(s, cap, c);
        ps_drop(s, c);
    }
}

/* Unmap the chunks left (spares: every block is back by now). */
static void ps_release(PathSlab *s) {
    uint32_t k;
    PsChunk *c, *n;
    for (k = 0; k <= PS_MAX_CAP; k++) {
        for (c = s->room[k]; c != NULL; c = n) {
            n = c->next;
            ps_unmap(c);
        }
        s->room[k] = NULL;
    }
    for (c = s->spare; c != NULL; c = n) {
        n = c->next;
        ps_unmap(c);
    }
    s->spare = NULL;
    s->nspare = 0;
    s->chunks = 0;
    s->reached = 0;
}

/* Octets the path arrays take: what blocks ever reached in each chunk held
   (freed blocks and spare chunks included: they wait for reuse). */
static size_t ps_bytes(const PathSlab *s) {
    return s->reached;
}
