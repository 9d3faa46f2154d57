# cython: language_level=3
"""The HTTP/2 server connection on libnghttp2 (framing, HPACK, stream states, windows and
header validation in C), with the subset of h2.connection.H2Connection's interface that
gateway/protocol/h2.py's DownstreamH2 uses, and h2.events objects out: the pure-Python
`h2` library stays the fallback behind the same interface (gateway/h2codec/__init__.py).

DATA goes out through one nghttp2 data provider per stream reading our per-stream buffer;
`local_flow_control_window` subtracts what is buffered, so the caller holds the rest and
pauses its upstream exactly as with h2. Trailers wait for the buffer to drain (nghttp2
sends HEADERS ahead of queued DATA otherwise). Received DATA is credited back only by
acknowledge_received_data (no automatic WINDOW_UPDATE), as with h2."""
from libc.stdint cimport int32_t, uint8_t, uint32_t
from libc.string cimport memcmp, memcpy
from libc.stdlib cimport malloc, free
from cpython.bytes cimport PyBytes_FromStringAndSize

import h2.events as _ev
import h2.exceptions as _exc

include "_nghttp2_api.pxi"


cdef class _Stream:
    """What is buffered for one stream's DATA provider."""
    cdef bytearray buf
    cdef bint provider  # a data provider is submitted (and not finished)
    cdef bint end  # END_STREAM after the buffer
    cdef list trailers  # ... or these trailers after it

    def __cinit__(self):
        self.buf = bytearray()
        self.provider = False
        self.end = False
        self.trailers = None


cdef class NgH2Connection:
    """A server-side HTTP/2 connection on libnghttp2 (see the module docstring)."""
    cdef nghttp2_session *session
    cdef list events
    cdef list headers
    cdef size_t header_bytes
    cdef size_t max_header_list
    cdef dict streams
    cdef Py_ssize_t buffered  # DATA bytes buffered over all streams
    cdef object error  # an exception a callback raised (failure of the whole session)
    cdef bytes pending  # serialized by receive_data, not yet taken by data_to_send

    cdef readonly bint client  # a client session (the gRPC upstream side): responses in, requests out
    cdef uint32_t initial_window  # (client) SETTINGS_INITIAL_WINDOW_SIZE we announce
    cdef int32_t connection_window  # (client) our receive window for the whole connection
    cdef readonly int open_outbound_streams  # (client) streams we opened that are not closed yet
    cdef set final  # (client) streams whose final (non-1xx) response head came

    def __cinit__(self, uint32_t max_concurrent_streams, uint32_t max_header_list_size, bint client=False,
                  uint32_t initial_window=65535, int32_t connection_window=65535):
        cdef nghttp2_session_callbacks *cbs
        cdef nghttp2_option *opt
        self.events = []
        self.headers = []
        self.streams = {}
        self.buffered = 0
        self.max_header_list = max_header_list_size
        self.error = None
        self.pending = b""
        self.session = NULL
        self._max_streams = max_concurrent_streams
        self.client = client
        self.initial_window = initial_window
        self.connection_window = connection_window
        self.open_outbound_streams = 0
        self.final = set()
        if nghttp2_session_callbacks_new(&cbs) != 0:
            raise MemoryError()
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, _on_frame_recv)
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, _on_begin_headers)
        nghttp2_session_callbacks_set_on_header_callback(cbs, _on_header)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, _on_data_chunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, _on_stream_close)
        if nghttp2_option_new(&opt) != 0:
            nghttp2_session_callbacks_del(cbs)
            raise MemoryError()
        nghttp2_option_set_no_auto_window_update(opt, 1)
        nghttp2_option_set_max_continuations(opt, 64)
        if client:
            rv = nghttp2_session_client_new2(&self.session, cbs, <void *>self, opt)
        else:
            rv = nghttp2_session_server_new2(&self.session, cbs, <void *>self, opt)
        nghttp2_option_del(opt)
        nghttp2_session_callbacks_del(cbs)
        if rv != 0:
            raise MemoryError()

    cdef uint32_t _max_streams

    def __dealloc__(self):
        if self.session != NULL:
            nghttp2_session_del(self.session)
            self.session = NULL

    # --- setup and I/O ----------------------------------------------------------------

    def initiate_connection(self):
        cdef nghttp2_settings_entry iv[3]
        if self.client:
            iv[0].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH
            iv[0].value = 0
            iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE
            iv[1].value = self.initial_window
            iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE
            iv[2].value = <uint32_t>self.max_header_list
            _check(nghttp2_submit_settings(self.session, NGHTTP2_FLAG_NONE, iv, 3))
            if self.connection_window > 65535:
                _check(nghttp2_session_set_local_window_size(self.session, NGHTTP2_FLAG_NONE, 0,
                                                             self.connection_window))
            return
        iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS
        iv[0].value = self._max_streams
        iv[1].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE
        iv[1].value = <uint32_t>self.max_header_list
        _check(nghttp2_submit_settings(self.session, NGHTTP2_FLAG_NONE, iv, 2))

    def receive_data(self, const uint8_t[:] data not None):
        """The events of these bytes (h2.events objects); ProtocolError when the peer broke
        the protocol (a GOAWAY is queued: send data_to_send() and close)."""
        self.events = []
        cdef ssize_t rv = 0
        if len(data):
            rv = nghttp2_session_mem_recv(self.session, &data[0], len(data))
        if rv < 0 or self.error is not None:
            # a flood nghttp2 caught, or a callback's verdict (header list too large): calm down;
            # anything else: a protocol error
            calm = self.error is not None or rv == NGHTTP2_ERR_FLOODED or rv == NGHTTP2_ERR_TOO_MANY_SETTINGS
            nghttp2_session_terminate_session(self.session, NGHTTP2_ENHANCE_YOUR_CALM if calm else NGHTTP2_PROTOCOL_ERROR)
            err = self.error
            self.error = None
            raise _exc.ProtocolError(err or nghttp2_strerror(<int>rv).decode())
        # what nghttp2 answers at once (ACKs, WINDOW_UPDATEs; its GOAWAY: it decides it is done only
        # once that is out), kept in order until data_to_send, however many reads come before it
        self.pending += self._serialize()
        # (a client keeps its events: a GOAWAY the server sent is its ConnectionTerminated)
        if (not self.client and not nghttp2_session_want_read(self.session)
                and not nghttp2_session_want_write(self.session)):
            self.events = []  # nghttp2 answered a protocol error with a GOAWAY of its own
            raise _exc.ProtocolError("the peer broke the protocol; GOAWAY sent")
        events, self.events = self.events, []
        return events

    def data_to_send(self):
        out = self._serialize()
        if self.pending:
            out = self.pending + out
            self.pending = b""
        return out

    cdef bytes _serialize(self):
        cdef const uint8_t *p
        cdef ssize_t n
        out = []
        while True:
            n = nghttp2_session_mem_send(self.session, &p)
            if n <= 0:
                break
            out.append(PyBytes_FromStringAndSize(<const char *>p, n))
        return b"".join(out) if len(out) != 1 else out[0]

    # --- frames out ----------------------------------------------------------------------

    def send_headers(self, int32_t stream_id, headers, end_stream=False):
        st = <_Stream>self.streams.get(stream_id)
        if st is not None and st.provider:  # trailers after buffered DATA: sent when it drains
            st.trailers = list(headers)
            st.end = True
            nghttp2_session_resume_data(self.session, stream_id)
            return
        _submit_headers(self.session, stream_id, headers, end_stream)

    # --- the client side (gRPC upstream connections) -----------------------------------

    def can_open_stream(self):
        """A new request stream may start: no GOAWAY came, and the peer's
        SETTINGS_MAX_CONCURRENT_STREAMS leaves room."""
        return (nghttp2_session_check_request_allowed(self.session) != 0 and self.open_outbound_streams <
                nghttp2_session_get_remote_settings(self.session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))

    def open_stream(self, headers, end_stream=False):
        """A request's HEADERS on a new stream; its stream id. A request with a body gets its
        DATA provider now (nghttp2 knows a client stream only once its HEADERS are out):
        send_data fills its buffer, end_stream ends it."""
        cdef nghttp2_data_provider prd
        cdef _Stream st
        prd.source.ptr = NULL
        prd.read_callback = _read_data
        sid = _submit_request(self.session, headers, NULL if end_stream else &prd)
        self.open_outbound_streams += 1
        if not end_stream:
            st = self._stream(sid)
            st.provider = True
        return sid

    def ping(self, bytes opaque not None):
        if len(opaque) != 8:
            raise ValueError("PING data is 8 bytes")
        _check(nghttp2_submit_ping(self.session, NGHTTP2_FLAG_NONE, <const uint8_t *><char *>opaque))

    def increment_flow_control_window(self, int32_t n, stream_id=None):
        _check(nghttp2_submit_window_update(self.session, NGHTTP2_FLAG_NONE,
                                           0 if stream_id is None else <int32_t>stream_id, n))

    def send_h1_head(self, int32_t stream_id, bytes data not None, Py_ssize_t end, end_stream=False):
        """The HTTP/1.1 response head data[:end] (`HTTP/1.1 200 OK`, then `name: value` lines,
        CRLF between, no blank line: what the HTTP/1 codec writes) as a HEADERS frame:
        :status from the status line, names lowercased, values without OWS, connection-specific
        lines dropped (RFC 9113 8.2.2). One C pass: no Python object per field."""
        cdef const char *p = data
        cdef Py_ssize_t n = min(end, len(data)), i, s, e, c, v, ve, k = 1, lines = 2
        cdef nghttp2_nv *nva
        cdef uint8_t *low
        if n < 12 or data[:5] != b"HTTP/":
            raise _exc.ProtocolError("not an HTTP/1.1 response head")
        for i in range(n):
            if p[i] == 10:
                lines += 1
        nva = <nghttp2_nv *>malloc(lines * sizeof(nghttp2_nv))
        low = <uint8_t *>malloc(n)
        if nva == NULL or low == NULL:
            free(nva)
            free(low)
            raise MemoryError()
        try:
            nva[0].name = <uint8_t *>b":status"
            nva[0].namelen = 7
            nva[0].value = <uint8_t *>p + 9
            nva[0].valuelen = 3
            nva[0].flags = NGHTTP2_NV_FLAG_NONE
            i = 12
            while i < n and p[i] != 10:
                i += 1
            i += 1
            while i < n:
                s = i
                e = s
                while e < n and p[e] != 13 and p[e] != 10:
                    e += 1
                i = e + 1
                if i < n and p[e] == 13 and p[i] == 10:
                    i += 1
                c = s
                while c < e and p[c] != 58:  # ':'
                    low[c] = p[c] + 32 if 65 <= p[c] <= 90 else p[c]
                    c += 1
                if c == e or c == s:
                    continue
                if _connection_specific(low + s, c - s):
                    continue
                v = c + 1
                while v < e and (p[v] == 32 or p[v] == 9):
                    v += 1
                ve = e
                while ve > v and (p[ve - 1] == 32 or p[ve - 1] == 9):
                    ve -= 1
                nva[k].name = low + s
                nva[k].namelen = c - s
                nva[k].value = <uint8_t *>p + v
                nva[k].valuelen = ve - v
                nva[k].flags = NGHTTP2_NV_FLAG_NONE  # nghttp2 copies them
                k += 1
            rv = nghttp2_submit_headers(self.session, NGHTTP2_FLAG_END_STREAM if end_stream else NGHTTP2_FLAG_NONE,
                                        stream_id, NULL, nva, k, NULL)
        finally:
            free(nva)
            free(low)
        _check(rv)

    def send_data(self, int32_t stream_id, data, end_stream=False):
        cdef _Stream st = self._stream(stream_id)
        st.buf += data
        self.buffered += len(data)
        if end_stream:
            st.end = True
        self._provide(stream_id, st)

    def end_stream(self, int32_t stream_id):
        cdef _Stream st = self._stream(stream_id)
        st.end = True
        self._provide(stream_id, st)

    cdef _Stream _stream(self, int32_t stream_id):
        st = self.streams.get(stream_id)
        if st is None:
            st = self.streams[stream_id] = _Stream()
        return <_Stream>st

    cdef _provide(self, int32_t stream_id, _Stream st):
        cdef nghttp2_data_provider prd
        if st.provider:
            nghttp2_session_resume_data(self.session, stream_id)
            return
        prd.source.ptr = NULL
        prd.read_callback = _read_data
        rv = nghttp2_submit_data(self.session, NGHTTP2_FLAG_END_STREAM, stream_id, &prd)
        if rv != 0:
            self._drop(stream_id)
            raise _exc.StreamClosedError(stream_id)
        st.provider = True

    cdef _drop(self, int32_t stream_id):
        st = self.streams.pop(stream_id, None)
        if st is not None:
            self.buffered -= len((<_Stream>st).buf)

    def reset_stream(self, int32_t stream_id, error_code=0):
        self._drop(stream_id)
        _check(nghttp2_submit_rst_stream(self.session, NGHTTP2_FLAG_NONE, stream_id, <uint32_t>int(error_code)))

    def acknowledge_received_data(self, size_t n, int32_t stream_id):
        if n and nghttp2_session_consume(self.session, stream_id, n) != 0:
            nghttp2_session_consume_connection(self.session, n)  # the stream is gone

    def local_flow_control_window(self, int32_t stream_id):
        cdef int32_t s = nghttp2_session_get_stream_remote_window_size(self.session, stream_id)
        cdef int32_t c = nghttp2_session_get_remote_window_size(self.session)
        if s < 0 and self.client and stream_id in self.streams:
            # a request whose HEADERS are not out yet (nghttp2 knows the stream only then):
            # it starts with the peer's initial window
            s = <int32_t>nghttp2_session_get_remote_settings(self.session, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE)
        if s < 0:
            return 0
        st = self.streams.get(stream_id)
        mine = len((<_Stream>st).buf) if st is not None else 0
        return max(0, min(s - mine, c - self.buffered))

    @property
    def max_outbound_frame_size(self):
        return nghttp2_session_get_remote_settings(self.session, NGHTTP2_SETTINGS_MAX_FRAME_SIZE)

    @property
    def highest_inbound_stream_id(self):
        return nghttp2_session_get_last_proc_stream_id(self.session)

    def close_connection(self, error_code=0, additional_data=None, last_stream_id=None):
        cdef bytes extra = additional_data or b""
        last = nghttp2_session_get_last_proc_stream_id(self.session) if last_stream_id is None else last_stream_id
        _check(nghttp2_submit_goaway(self.session, NGHTTP2_FLAG_NONE, last, <uint32_t>int(error_code),
                                     <const uint8_t *><char *>extra, len(extra)))


cdef bint _connection_specific(const uint8_t *name, Py_ssize_t n) noexcept:
    """connection, keep-alive, proxy-connection, transfer-encoding, upgrade (lowercase)."""
    if n == 10:
        return memcmp(name, b"connection", 10) == 0 or memcmp(name, b"keep-alive", 10) == 0
    if n == 16:
        return memcmp(name, b"proxy-connection", 16) == 0
    if n == 17:
        return memcmp(name, b"transfer-encoding", 17) == 0
    if n == 7:
        return memcmp(name, b"upgrade", 7) == 0
    return False


cdef int _check(int rv) except -1:
    if rv < 0:
        raise _exc.ProtocolError(nghttp2_strerror(rv).decode())
    return rv  # (a new stream's id, from nghttp2_submit_headers with stream id -1)


cdef nghttp2_nv *_nv_array(list fields) except NULL:
    """An nghttp2_nv array (malloc'ed: the caller frees it) over the (name, value) bytes in
    fields, which must outlive its use: the array points into them (nghttp2 copies them
    when the headers are submitted)."""
    cdef Py_ssize_t n = len(fields), i
    cdef nghttp2_nv *nva = <nghttp2_nv *>malloc(max(n, 1) * sizeof(nghttp2_nv))
    cdef bytes name, value
    if nva == NULL:
        raise MemoryError()
    for i in range(n):
        name, value = fields[i]
        nva[i].name = <uint8_t *><char *>name
        nva[i].namelen = len(name)
        nva[i].value = <uint8_t *><char *>value
        nva[i].valuelen = len(value)
        nva[i].flags = NGHTTP2_NV_FLAG_NONE
    return nva


cdef int _submit_headers(nghttp2_session *session, int32_t stream_id, headers, end_stream, bint trailer=False) except -1:
    cdef list fields = [(bytes(hn), bytes(hv)) for hn, hv in headers]
    cdef Py_ssize_t n = len(fields)
    cdef nghttp2_nv *nva = _nv_array(fields)
    try:
        if trailer:
            rv = nghttp2_submit_trailer(session, stream_id, nva, n)
        else:
            rv = nghttp2_submit_headers(session, NGHTTP2_FLAG_END_STREAM if end_stream else NGHTTP2_FLAG_NONE,
                                        stream_id, NULL, nva, n, NULL)
    finally:
        free(nva)
    return _check(rv)


# --- events: the h2 library's classes, made without their dataclass __init__ (keyword
# parsing and defaults cost more than the rest of a small request's frame handling); every
# field is set, so they compare, print and read as the library's own ---------------------

_object_new = object.__new__
_RequestReceived = _ev.RequestReceived
_TrailersReceived = _ev.TrailersReceived
_StreamEnded = _ev.StreamEnded
_DataReceived = _ev.DataReceived
_WindowUpdated = _ev.WindowUpdated
_ResponseReceived = _ev.ResponseReceived


cdef object _headers_event(object cls, int32_t sid, list headers, object end):
    ev = _object_new(cls)
    ev.stream_id = sid
    ev.headers = headers
    ev.stream_ended = end
    ev.priority_updated = None
    return ev


cdef object _data_received(int32_t sid, bytes data, size_t length):
    ev = _object_new(_DataReceived)
    ev.stream_id = sid
    ev.data = data
    ev.flow_controlled_length = length
    ev.stream_ended = None
    return ev


cdef int32_t _submit_request(nghttp2_session *session, headers, const nghttp2_data_provider *prd) except -1:
    cdef list fields = [(bytes(hn), bytes(hv)) for hn, hv in headers]
    cdef Py_ssize_t n = len(fields)
    cdef nghttp2_nv *nva = _nv_array(fields)
    cdef int32_t rv
    try:
        rv = nghttp2_submit_request(session, NULL, nva, n, prd, NULL)
    finally:
        free(nva)
    return _check(rv)


# --- callbacks from nghttp2 (exceptions become a failed session) -------------------------

cdef ssize_t _read_data(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                        uint32_t *data_flags, nghttp2_data_source *source, void *user_data) noexcept:
    cdef NgH2Connection conn = <NgH2Connection>user_data
    cdef _Stream st
    cdef size_t n
    try:
        obj = conn.streams.get(stream_id)
        if obj is None:
            data_flags[0] |= NGHTTP2_DATA_FLAG_EOF
            return 0
        st = <_Stream>obj
        n = min(length, <size_t>len(st.buf))
        if n:
            memcpy(buf, <const char *>st.buf, n)
            del st.buf[:n]
            conn.buffered -= n
        if not st.buf:
            if st.end:
                data_flags[0] |= NGHTTP2_DATA_FLAG_EOF
                st.provider = False
                if st.trailers is not None:
                    data_flags[0] |= NGHTTP2_DATA_FLAG_NO_END_STREAM
                    _submit_headers(session, stream_id, st.trailers, True, True)
                    st.trailers = None
            elif not n:
                return NGHTTP2_ERR_DEFERRED
        return n
    except BaseException as e:
        conn.error = e
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int _on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) noexcept:
    cdef NgH2Connection conn = <NgH2Connection>user_data
    conn.headers = []
    conn.header_bytes = 0
    return 0


cdef int _on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                    const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) noexcept:
    cdef NgH2Connection conn = <NgH2Connection>user_data
    conn.header_bytes += namelen + valuelen + 32
    if conn.header_bytes > conn.max_header_list:  # an HPACK bomb, or just too much: the session fails
        conn.error = "header list larger than %d bytes" % conn.max_header_list
        return NGHTTP2_ERR_CALLBACK_FAILURE
    try:
        conn.headers.append((PyBytes_FromStringAndSize(<const char *>name, namelen),
                             PyBytes_FromStringAndSize(<const char *>value, valuelen)))
    except BaseException as e:
        conn.error = e
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int _on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                        size_t length, void *user_data) noexcept:
    cdef NgH2Connection conn = <NgH2Connection>user_data
    try:
        conn.events.append(_data_received(stream_id, PyBytes_FromStringAndSize(<const char *>data, length), length))
    except BaseException as e:
        conn.error = e
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int _on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                          void *user_data) noexcept:
    cdef NgH2Connection conn = <NgH2Connection>user_data
    try:
        conn._drop(stream_id)
        if conn.client and stream_id & 1:  # one of ours (client streams are odd)
            conn.open_outbound_streams -= 1
            conn.final.discard(stream_id)
    except BaseException as e:
        conn.error = e
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int _on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) noexcept:
    cdef NgH2Connection conn = <NgH2Connection>user_data
    cdef int t = frame.hd.type
    cdef int32_t sid = frame.hd.stream_id
    try:
        events = conn.events
        end = None
        if frame.hd.flags & NGHTTP2_FLAG_END_STREAM and (t == NGHTTP2_DATA or t == NGHTTP2_HEADERS):
            end = _object_new(_StreamEnded)
            end.stream_id = sid
        if t == NGHTTP2_DATA:
            if frame.data.padlen:
                nghttp2_session_consume(session, sid, frame.data.padlen)  # padding: credited at once
        elif t == NGHTTP2_HEADERS:
            if frame.headers.cat == NGHTTP2_HCAT_REQUEST:
                ev = _headers_event(_RequestReceived, sid, conn.headers, end)
            elif conn.client and sid not in conn.final and conn.headers and conn.headers[0][0] == b":status":
                if conn.headers[0][1][:1] == b"1":  # a non-final response (100, 103)
                    ev = _ev.InformationalResponseReceived(stream_id=sid, headers=conn.headers)
                else:
                    conn.final.add(sid)
                    ev = _headers_event(_ResponseReceived, sid, conn.headers, end)
            else:
                ev = _headers_event(_TrailersReceived, sid, conn.headers, end)
            conn.headers = []
            events.append(ev)
        elif t == NGHTTP2_RST_STREAM:
            ev = _ev.StreamReset(stream_id=sid, error_code=frame.rst_stream.error_code, remote_reset=True)
            conn._drop(sid)
            events.append(ev)
        elif t == NGHTTP2_WINDOW_UPDATE:
            ev = _object_new(_WindowUpdated)
            ev.stream_id = sid
            ev.delta = frame.window_update.window_size_increment
            events.append(ev)
        elif t == NGHTTP2_SETTINGS:
            if not frame.hd.flags & NGHTTP2_FLAG_ACK:
                ev = _ev.RemoteSettingsChanged()
                ev.changed_settings = {}
                events.append(ev)
        elif t == NGHTTP2_PING:
            if not frame.hd.flags & NGHTTP2_FLAG_ACK:
                ev = _ev.PingReceived(ping_data=PyBytes_FromStringAndSize(<const char *>frame.ping.opaque_data, 8))
                events.append(ev)
            elif conn.client:
                events.append(_ev.PingAckReceived(
                    ping_data=PyBytes_FromStringAndSize(<const char *>frame.ping.opaque_data, 8)))
        elif t == NGHTTP2_GOAWAY:
            ev = _ev.ConnectionTerminated()
            ev.error_code = frame.goaway.error_code
            ev.last_stream_id = frame.goaway.last_stream_id
            ev.additional_data = PyBytes_FromStringAndSize(<const char *>frame.goaway.opaque_data,
                                                           frame.goaway.opaque_data_len)
            events.append(ev)
        if end is not None:
            events.append(end)
    except BaseException as e:
        conn.error = e
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0
