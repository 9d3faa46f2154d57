# The parts of OpenSSL's C API that _tls.pyx uses (libssl and libcrypto, OpenSSL 1.1.1 or 3.x).
# Several of these are macros in the headers (SSL_CTX_set_min_proto_version,
# SSL_CTX_add0_chain_cert, SSL_CTX_set_tlsext_servername_callback, BIO_set_mem_eof_return,
# SSL_set_app_data...): Cython emits calls by name, so declaring them as functions is enough.

from libc.stdint cimport uint64_t

cdef extern from "openssl/ssl.h" nogil:
    ctypedef struct SSL_CTX
    ctypedef struct SSL
    ctypedef struct SSL_METHOD
    ctypedef struct SSL_CIPHER
    ctypedef struct BIO
    ctypedef struct BIO_METHOD
    ctypedef struct X509
    ctypedef struct EVP_PKEY

    int SSL_ERROR_NONE, SSL_ERROR_SSL, SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE
    int SSL_ERROR_SYSCALL, SSL_ERROR_ZERO_RETURN
    int TLSEXT_NAMETYPE_host_name
    int SSL_TLSEXT_ERR_OK, SSL_TLSEXT_ERR_NOACK
    int OPENSSL_NPN_NEGOTIATED
    int TLS1_2_VERSION
    uint64_t SSL_OP_ALL, SSL_OP_NO_SSLv3, SSL_OP_NO_COMPRESSION, SSL_OP_CIPHER_SERVER_PREFERENCE
    uint64_t SSL_OP_ENABLE_MIDDLEBOX_COMPAT, SSL_OP_NO_RENEGOTIATION
    long SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, SSL_MODE_RELEASE_BUFFERS

    const SSL_METHOD* TLS_server_method()
    SSL_CTX* SSL_CTX_new(const SSL_METHOD* method)
    void SSL_CTX_free(SSL_CTX* ctx)
    uint64_t SSL_CTX_set_options(SSL_CTX* ctx, uint64_t options)
    long SSL_CTX_set_mode(SSL_CTX* ctx, long mode)
    int SSL_CTX_set_min_proto_version(SSL_CTX* ctx, int version)
    int SSL_CTX_set_cipher_list(SSL_CTX* ctx, const char* ciphers)
    int SSL_CTX_set_session_id_context(SSL_CTX* ctx, const unsigned char* sid, unsigned int n)
    int SSL_CTX_use_certificate(SSL_CTX* ctx, X509* x)
    int SSL_CTX_add0_chain_cert(SSL_CTX* ctx, X509* x)
    int SSL_CTX_use_PrivateKey(SSL_CTX* ctx, EVP_PKEY* pkey)
    int SSL_CTX_check_private_key(const SSL_CTX* ctx)
    int SSL_select_next_proto(unsigned char** out, unsigned char* outlen,
                              const unsigned char* server, unsigned int server_len,
                              const unsigned char* client, unsigned int client_len)

    SSL* SSL_new(SSL_CTX* ctx)
    void SSL_free(SSL* s)
    void SSL_set_bio(SSL* s, BIO* rbio, BIO* wbio)
    void SSL_set_accept_state(SSL* s)
    int SSL_set_app_data(SSL* s, void* arg)
    void* SSL_get_app_data(const SSL* s)
    int SSL_do_handshake(SSL* s)
    int SSL_read(SSL* s, void* buf, int num)
    int SSL_write_ex(SSL* s, const void* buf, size_t num, size_t* written)
    int SSL_get_error(const SSL* s, int ret)
    int SSL_shutdown(SSL* s)
    int SSL_pending(const SSL* s)
    int SSL_is_init_finished(const SSL* s)
    const char* SSL_get_servername(const SSL* s, int kind)
    SSL_CTX* SSL_set_SSL_CTX(SSL* s, SSL_CTX* ctx)
    void SSL_get0_alpn_selected(const SSL* s, const unsigned char** data, unsigned int* n)
    const char* SSL_get_version(const SSL* s)
    const SSL_CIPHER* SSL_get_current_cipher(const SSL* s)
    const char* SSL_CIPHER_get_name(const SSL_CIPHER* c)
    int SSL_CIPHER_get_bits(const SSL_CIPHER* c, int* alg_bits)

# the callbacks run inside SSL_do_handshake, which we call holding the GIL
cdef extern from "openssl/ssl.h":
    ctypedef int (*alpn_cb)(SSL* s, const unsigned char** out, unsigned char* outlen,
                            const unsigned char* inp, unsigned int inlen, void* arg) noexcept
    void SSL_CTX_set_alpn_select_cb(SSL_CTX* ctx, alpn_cb cb, void* arg)
    ctypedef int (*servername_cb)(SSL* s, int* al, void* arg) noexcept
    long SSL_CTX_set_tlsext_servername_callback(SSL_CTX* ctx, servername_cb cb)

cdef extern from "openssl/bio.h" nogil:
    const BIO_METHOD* BIO_s_mem()
    BIO* BIO_new(const BIO_METHOD* method)
    BIO* BIO_new_mem_buf(const void* buf, int n)
    int BIO_free(BIO* b)
    int BIO_write(BIO* b, const void* data, int n)
    int BIO_read(BIO* b, void* data, int n)
    size_t BIO_ctrl_pending(BIO* b)
    long BIO_set_mem_eof_return(BIO* b, int v)

cdef extern from "openssl/pem.h" nogil:
    X509* PEM_read_bio_X509(BIO* b, X509** x, void* cb, void* u)
    X509* PEM_read_bio_X509_AUX(BIO* b, X509** x, void* cb, void* u)
    EVP_PKEY* PEM_read_bio_PrivateKey(BIO* b, EVP_PKEY** x, void* cb, void* u)

cdef extern from "openssl/x509.h" nogil:
    void X509_free(X509* x)
    void EVP_PKEY_free(EVP_PKEY* k)

cdef extern from "openssl/err.h" nogil:
    unsigned long ERR_get_error()
    void ERR_clear_error()
    void ERR_error_string_n(unsigned long e, char* buf, size_t n)
