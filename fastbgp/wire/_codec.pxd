# C-level view of the compiled codec, for other Cython modules (the RIB and
# the load generator walk packed prefixes without going through Python).

cdef Py_ssize_t nlri_count(const unsigned char *p, Py_ssize_t start, Py_ssize_t end,
                           int maxbits, bint addpath) noexcept nogil
cdef Py_ssize_t chunk_end(const unsigned char *p, Py_ssize_t start, Py_ssize_t end,
                          Py_ssize_t room, bint addpath) noexcept nogil
cdef Py_ssize_t attr_end(const unsigned char *p, Py_ssize_t size, Py_ssize_t i, Py_ssize_t *vs) except -1
cdef Py_ssize_t segment_at(const unsigned char *p, Py_ssize_t n, Py_ssize_t i, int *st, int *cnt) except -1
cdef unsigned long long asn_at(const unsigned char *p, Py_ssize_t a, Py_ssize_t n, int width) noexcept
