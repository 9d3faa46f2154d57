# cython: language_level=3, boundscheck=False, wraparound=False
"""The HTTPS listener's TLS layer, compiled: one SSL* over two memory BIOs per connection.

The event loop's TLS layer (uvloop's SSLProtocol) runs a Python-level state machine around
ssl.SSLObject for every record: ~8k instructions per proxied request besides OpenSSL's own
work (issue 13, `bench/proxy_profile.py --callgrind --tls`). Here the socket's protocol is
`TLSServer`, which is also the transport of the HTTP/1 or HTTP/2 protocol above it:

    socket bytes -> data_received -> BIO_write -> SSL_read -> app.data_received(plaintext)
    app.write(plaintext) -> SSL_write -> BIO_read -> socket transport.write(ciphertext)

Certificates come from PEM bytes (`ServerContext`, our own SSL_CTX: the ssl module has no
public way to hand one over) with the settings gateway/tls.py gives ssl.SSLContext: TLS 1.2+,
CPython's default cipher string and options, ALPN from gateway.tls.ALPN in server order, and
renegotiation refused. SNI calls the CertStore's `lookup` and switches the connection's
SSL_CTX. Any TLS error closes the connection after sending what OpenSSL queued (its alert).
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

include "_openssl.pxi"

# CPython 3.11's default (Modules/_ssl.c PY_SSL_DEFAULT_CIPHER_STRING): the TLS 1.2 suites
# ssl.SSLContext(PROTOCOL_TLS_SERVER) offers; TLS 1.3's are OpenSSL's defaults in both
DEF_CIPHERS = b"@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM"
SESSION_ID_CONTEXT = b"Python"  # as CPython's server contexts (session resumption)

cdef enum:
    HANDSHAKE = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3

# plaintext is decrypted here, then copied into one bytes object per delivery (single
# thread per process: nothing else uses it between the SSL_read and the copy)
cdef enum:
    READ_BUF = 65536
cdef char _rbuf[READ_BUF]


class TLSError(ValueError):
    """A certificate or key that OpenSSL does not load (gateway/tls.py reports it)."""


cdef str _errors(str what):
    cdef unsigned long e
    cdef char buf[256]
    parts = []
    e = ERR_get_error()
    while e:
        ERR_error_string_n(e, buf, sizeof(buf))
        parts.append(buf.decode("latin-1"))
        e = ERR_get_error()
    return "%s: %s" % (what, "; ".join(parts) or "unknown error")


cdef int _select_alpn(SSL* s, const unsigned char** out, unsigned char* outlen,
                      const unsigned char* inp, unsigned int inlen, void* arg) noexcept:
    """The server's preference first (h2, then http/1.1), as ssl.SSLContext's: no overlap
    means no ALPN (the connection goes on as HTTP/1.1)."""
    cdef ServerContext sc = <ServerContext>arg
    if not sc.alpn_len:
        return SSL_TLSEXT_ERR_NOACK
    if SSL_select_next_proto(<unsigned char**>out, outlen, <const unsigned char*>sc.alpn_wire,
                             sc.alpn_len, inp, inlen) != OPENSSL_NPN_NEGOTIATED:
        return SSL_TLSEXT_ERR_NOACK
    return SSL_TLSEXT_ERR_OK


cdef int _servername(SSL* s, int* al, void* arg) noexcept:
    """SNI: the certificate of the named host (the CertStore's lookup), else the listener's."""
    cdef const char* name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name)
    cdef void* app = SSL_get_app_data(s)
    cdef TLSServer conn
    cdef ServerContext sc
    if name == NULL or app == NULL:
        return SSL_TLSEXT_ERR_OK
    conn = <TLSServer>app
    try:
        found = conn.lookup(name.decode("ascii", "replace").lower())
        if found is not None:
            native = found.native
            if isinstance(native, ServerContext):
                sc = <ServerContext>native
                conn.chosen = sc  # keeps the ALPN list the callback's arg points to alive
                SSL_set_SSL_CTX(s, sc.ctx)
    except Exception:  # a broken lookup serves the default certificate, never a failed handshake
        pass
    return SSL_TLSEXT_ERR_OK


cdef int _no_password(char* buf, int size, int rwflag, void* u) noexcept nogil:
    """An encrypted tls.key does not load (OpenSSL's default would prompt on a terminal)."""
    return -1


cdef class ServerContext:
    """An SSL_CTX for one certificate chain and key (PEM bytes), with the gateway's settings."""
    cdef SSL_CTX* ctx
    cdef bytes alpn_wire
    cdef unsigned int alpn_len

    def __cinit__(self, bytes cert, bytes key, alpn=("h2", "http/1.1")):
        self.ctx = SSL_CTX_new(TLS_server_method())
        if self.ctx == NULL:
            raise MemoryError(_errors("SSL_CTX_new"))
        ERR_clear_error()
        try:
            self._configure(cert, key, list(alpn))
        finally:
            ERR_clear_error()  # (ssl.SSLContext reads the same thread's error queue)

    cdef _configure(self, bytes cert, bytes key, list alpn):
        cdef SSL_CTX* ctx = self.ctx
        cdef BIO* bio
        cdef X509* x
        cdef EVP_PKEY* pkey
        SSL_CTX_set_options(ctx, SSL_OP_ALL | SSL_OP_NO_SSLv3 | SSL_OP_NO_COMPRESSION
                            | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_ENABLE_MIDDLEBOX_COMPAT
                            | SSL_OP_NO_RENEGOTIATION)
        SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)  # (as CPython: buffers kept per connection)
        if SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1:
            raise TLSError(_errors("minimum version"))
        if SSL_CTX_set_cipher_list(ctx, DEF_CIPHERS) != 1:
            raise TLSError(_errors("cipher list"))
        sid = SESSION_ID_CONTEXT
        SSL_CTX_set_session_id_context(ctx, <const unsigned char*>PyBytes_AS_STRING(sid), <unsigned int>len(sid))
        # the chain: the leaf first, then its intermediates (as load_cert_chain reads a file)
        bio = BIO_new_mem_buf(PyBytes_AS_STRING(cert), <int>PyBytes_GET_SIZE(cert))
        if bio == NULL:
            raise MemoryError()
        try:
            x = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL)
            if x == NULL:
                raise TLSError(_errors("tls.crt has no certificate that loads"))
            if SSL_CTX_use_certificate(ctx, x) != 1:
                X509_free(x)
                raise TLSError(_errors("tls.crt"))
            X509_free(x)  # (the context holds its own reference)
            while True:
                x = PEM_read_bio_X509(bio, NULL, NULL, NULL)
                if x == NULL:
                    break
                if SSL_CTX_add0_chain_cert(ctx, x) != 1:  # takes x on success
                    X509_free(x)
                    raise TLSError(_errors("tls.crt chain"))
            ERR_clear_error()  # the end of the PEM text ("no start line") is not an error
        finally:
            BIO_free(bio)
        bio = BIO_new_mem_buf(PyBytes_AS_STRING(key), <int>PyBytes_GET_SIZE(key))
        if bio == NULL:
            raise MemoryError()
        try:
            pkey = PEM_read_bio_PrivateKey(bio, NULL, <void*>_no_password, NULL)
            if pkey == NULL:
                raise TLSError(_errors("tls.key has no private key that loads"))
            ok = SSL_CTX_use_PrivateKey(ctx, pkey)
            EVP_PKEY_free(pkey)
            if ok != 1:
                raise TLSError(_errors("tls.key"))
        finally:
            BIO_free(bio)
        if SSL_CTX_check_private_key(ctx) != 1:
            raise TLSError(_errors("tls.key does not match tls.crt"))
        wire = b"".join(bytes([len(p)]) + p.encode("ascii") for p in alpn if 0 < len(p) < 256)
        self.alpn_wire = wire
        self.alpn_len = len(wire)
        SSL_CTX_set_alpn_select_cb(ctx, _select_alpn, <void*>self)
        SSL_CTX_set_tlsext_servername_callback(ctx, _servername)

    def __dealloc__(self):
        if self.ctx != NULL:
            SSL_CTX_free(self.ctx)  # (connections still on it hold their own reference)
            self.ctx = NULL


cdef class TLSServer:
    """The socket's protocol and the application protocol's transport, for one connection.

    `choose(alpn)` (alpn: "h2", "http/1.1" or None) returns the protocol that takes the
    connection once the handshake is done; `lookup(host)` is the CertStore's (an object
    with `.native`, a ServerContext, or None); `listener` serves unknown names."""
    cdef SSL* ssl
    cdef BIO* rbio
    cdef BIO* wbio
    cdef int state
    cdef bint paused
    cdef bint app_connected
    cdef bint drain_scheduled
    cdef double handshake_timeout
    cdef object raw, raw_write, app, app_data_received, choose, loop, timer
    cdef readonly ServerContext listener
    cdef public object lookup
    cdef public ServerContext chosen

    def __cinit__(self, ServerContext listener, lookup, choose, loop, double handshake_timeout=10.0):
        self.listener = listener
        self.chosen = listener
        self.lookup = lookup
        self.choose = choose
        self.loop = loop
        self.handshake_timeout = handshake_timeout
        self.state = HANDSHAKE
        self.ssl = SSL_new(listener.ctx)
        if self.ssl == NULL:
            raise MemoryError(_errors("SSL_new"))
        self.rbio = BIO_new(BIO_s_mem())
        self.wbio = BIO_new(BIO_s_mem())
        if self.rbio == NULL or self.wbio == NULL:
            raise MemoryError()
        BIO_set_mem_eof_return(self.rbio, -1)  # empty means "want more", not EOF
        BIO_set_mem_eof_return(self.wbio, -1)
        SSL_set_bio(self.ssl, self.rbio, self.wbio)  # the SSL owns both from here
        SSL_set_accept_state(self.ssl)
        SSL_set_app_data(self.ssl, <void*>self)  # (borrowed: the SSL dies with self)

    def __dealloc__(self):
        if self.ssl != NULL:
            SSL_free(self.ssl)
            self.ssl = NULL

    # --- the socket's protocol ---------------------------------------------------------

    def connection_made(self, transport):
        self.raw = transport
        self.raw_write = transport.write
        if self.handshake_timeout > 0:
            self.timer = self.loop.call_later(self.handshake_timeout, self._handshake_expired)

    def data_received(self, data):
        cdef const char* p
        cdef Py_ssize_t n
        if self.state >= CLOSING:
            return
        if not PyBytes_CheckExact(data):
            data = bytes(data)
        p = PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
        if BIO_write(self.rbio, p, <int>n) != n:
            self._fail()
            return
        if self.state == HANDSHAKE:
            if not self._handshake():
                return
        if not self.paused:
            self._read()

    def eof_received(self):
        """TCP EOF without close_notify: closed at once (as uvloop's TLS layer does)."""
        return False

    def connection_lost(self, exc):
        cdef bint was_connected = self.app_connected
        self.state = CLOSED
        self.app_connected = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        app = self.app
        self.raw = self.raw_write = self.app_data_received = None
        self.app = None  # (the app holds us as its transport: no cycle left behind)
        if was_connected and app is not None:
            app.connection_lost(exc)

    def pause_writing(self):
        if self.app_connected:
            self.app.pause_writing()

    def resume_writing(self):
        if self.app_connected:
            self.app.resume_writing()

    # --- handshake and reading -----------------------------------------------------------

    cdef bint _handshake(self) except -1:
        """Advance the handshake; True once done and the application protocol is connected."""
        cdef int r = SSL_do_handshake(self.ssl)
        cdef int err
        if r != 1:
            err = SSL_get_error(self.ssl, r)
            self._flush()
            if err == SSL_ERROR_WANT_READ:
                return False
            ERR_clear_error()
            self._fail()  # a bad hello, plain HTTP, an unsupported version...: the alert, then closed
            return False
        self._flush()  # the server's last flight (TLS 1.3: its session tickets)
        self.state = OPEN
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        app = self.choose(self.alpn())
        self.app = app
        self.app_data_received = app.data_received
        self.app_connected = True
        app.connection_made(self)
        return self.state == OPEN

    cdef int _read(self) except -1:
        """Decrypt what the incoming BIO holds and hand it up, in one call per buffer full."""
        cdef int n, got, err
        while self.state == OPEN and not self.paused:
            got = 0
            err = SSL_ERROR_NONE
            while got < READ_BUF:
                n = SSL_read(self.ssl, _rbuf + got, READ_BUF - got)
                if n <= 0:
                    # read now: the application's writes below reset what SSL_get_error sees
                    err = SSL_get_error(self.ssl, n)
                    break
                got += n
                if not SSL_pending(self.ssl) and not BIO_ctrl_pending(self.rbio):
                    err = SSL_ERROR_WANT_READ  # all taken: spare the SSL_read that would say so
                    break
            if got:
                self.app_data_received(PyBytes_FromStringAndSize(_rbuf, got))
            if err == SSL_ERROR_NONE:  # the buffer filled: read on
                continue
            if err == SSL_ERROR_WANT_READ:
                if BIO_ctrl_pending(self.wbio):  # (a KeyUpdate's answer, an alert)
                    self._flush()
                return 0
            if err == SSL_ERROR_ZERO_RETURN:  # close_notify: the client is done
                ERR_clear_error()
                if self.state == OPEN and self.app_connected:
                    eof = getattr(self.app, "eof_received", None)
                    if eof is not None:
                        eof()
                self.close()
                return 0
            ERR_clear_error()  # a bad record, renegotiation attempted...: closed
            self._fail()
            return 0
        return 0

    def _drain(self):
        """After resume_reading: what arrived while paused, still in the BIOs."""
        self.drain_scheduled = False
        if self.state == OPEN and not self.paused:
            self._read()

    def _handshake_expired(self):
        self.timer = None
        if self.state == HANDSHAKE and self.raw is not None:
            self.state = CLOSING
            self.raw.abort()

    cdef int _flush(self) except -1:
        """Send what OpenSSL wrote into the outgoing BIO, as one socket write."""
        cdef size_t n = BIO_ctrl_pending(self.wbio)
        if n and self.raw_write is not None:
            out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>n)
            BIO_read(self.wbio, PyBytes_AS_STRING(out), <int>n)
            self.raw_write(out)
        return 0

    cdef int _fail(self) except -1:
        """A TLS error: its alert (if any) is sent, then the connection is closed."""
        if self.state >= CLOSING:
            return 0
        self._flush()
        self.state = CLOSING
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.raw is not None:
            self.raw.close()
        return 0

    # --- the application protocol's transport ----------------------------------------------

    def write(self, data):
        cdef size_t written
        cdef Py_buffer view
        if self.state != OPEN:
            return
        if PyBytes_CheckExact(data):
            if PyBytes_GET_SIZE(data) == 0:
                return
            if SSL_write_ex(self.ssl, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data), &written) != 1:
                ERR_clear_error()
                self._fail()
                return
        else:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            try:
                if view.len == 0:
                    return
                if SSL_write_ex(self.ssl, view.buf, <size_t>view.len, &written) != 1:
                    ERR_clear_error()
                    self._fail()
                    return
            finally:
                PyBuffer_Release(&view)
        self._flush()

    def writelines(self, list_of_data):
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self):
        return False

    def write_eof(self):
        raise NotImplementedError("TLS has no half-close")

    def close(self):
        """close_notify, then the socket closes once its buffer is sent."""
        if self.state >= CLOSING:
            return
        if self.state == OPEN:
            SSL_shutdown(self.ssl)
            ERR_clear_error()
            self._flush()
        self.state = CLOSING
        if self.raw is not None:
            self.raw.close()

    def abort(self):
        self.state = CLOSING
        if self.raw is not None:
            self.raw.abort()

    def is_closing(self):
        return self.state >= CLOSING

    def pause_reading(self):
        if not self.paused:
            self.paused = True
            if self.state < CLOSING and self.raw is not None:
                self.raw.pause_reading()

    def resume_reading(self):
        if self.paused:
            self.paused = False
            if self.state < CLOSING and self.raw is not None:
                self.raw.resume_reading()
                if not self.drain_scheduled and (SSL_pending(self.ssl) or BIO_ctrl_pending(self.rbio)):
                    self.drain_scheduled = True
                    self.loop.call_soon(self._drain)

    def is_reading(self):
        return not self.paused and self.state < CLOSING

    def set_protocol(self, protocol):
        self.app = protocol
        self.app_data_received = protocol.data_received

    def get_protocol(self):
        return self.app

    def get_write_buffer_size(self):
        return self.raw.get_write_buffer_size() if self.raw is not None else 0

    def get_write_buffer_limits(self):
        return self.raw.get_write_buffer_limits() if self.raw is not None else (0, 0)

    def set_write_buffer_limits(self, high=None, low=None):
        if self.raw is not None:
            self.raw.set_write_buffer_limits(high, low)

    def get_extra_info(self, name, default=None):
        if name == "ssl_object":
            return self
        if self.raw is None:
            return default
        return self.raw.get_extra_info(name, default)

    # --- what ssl.SSLObject answers about the session (get_extra_info("ssl_object")) -------

    def alpn(self):
        cdef const unsigned char* p = NULL
        cdef unsigned int n = 0
        SSL_get0_alpn_selected(self.ssl, &p, &n)
        return (<const char*>p)[:n].decode("ascii") if p != NULL and n else None

    def selected_alpn_protocol(self):
        return self.alpn()

    def version(self):
        if not SSL_is_init_finished(self.ssl):
            return None
        return SSL_get_version(self.ssl).decode("ascii")

    def cipher(self):
        cdef const SSL_CIPHER* c = SSL_get_current_cipher(self.ssl)
        if c == NULL:
            return None
        return (SSL_CIPHER_get_name(c).decode("ascii"), self.version(), SSL_CIPHER_get_bits(c, NULL))

    def server_name_context(self):
        """The ServerContext serving this connection (the listener's, or SNI's choice)."""
        return self.chosen
