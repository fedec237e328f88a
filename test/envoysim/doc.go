// Package envoysim is an Envoy stand-in for tests: it loads the Envoy
// bootstrap YAML users run (parsed into go-control-plane's bootstrap types,
// unknown fields rejected, protoc-gen-validate rules applied), serves its
// listeners on 127.0.0.1 (HTTP/1.1 and h2c), and emulates the HTTP
// connection manager, the router and the ext_proc filter over real gRPC,
// rule for rule as described in /work/shared/reference/envoy-extproc.md
// (§ numbers below refer to it). It is a TEST INSTRUMENT, not Envoy.
//
// # Modelled
//
//   - Bootstrap: static listeners with one HCM filter chain; inline
//     route_config; virtual hosts (exact domains, "*"); routes with prefix
//     or path match, cluster or cluster_header, timeout (default 15 s,
//     504 + flag UT), auto_host_rewrite (DNS clusters: the configured DNS
//     name), cluster_not_found_response_code (default 503: a missing
//     cluster_header or an unknown cluster gives 503, §5), route metadata,
//     typed_per_filter_config ExtProcPerRoute (disabled, overrides.
//     processing_mode / failure_mode_allow / metadata_options; merged
//     vhost→route once at decodeHeaders, §8); per_connection_buffer_limit_bytes
//     (BUFFERED over the limit ⇒ 413); generate_request_id (x-request-id);
//     stream_idle_timeout (504 once the request is complete, else 408);
//     x-forwarded-proto (kept if the client sent one: use_remote_address
//     false is the only mode modelled, so every request is external and
//     cleanInternalHeaders strips the router's x-envoy-* request headers and
//     route_config.internal_only_headers before any filter; x-envoy-internal
//     is always dropped); the router obeying x-envoy-upstream-rq-timeout-ms
//     (and removing it); route request_headers_to_remove (upstream request
//     only); router suppress_envoy_headers; the HCM local_reply_config
//     (local_reply.cc: first matching mapper; filters status_code_filter
//     EQ/GE/LE, response_flag_filter, and_filter, or_filter, metadata_filter
//     with null_match/present_match and match_if_key_not_found; status_code,
//     inline body, body_format_override; json_format of strings and objects
//     or text_format, commands %LOCAL_REPLY_BODY% %RESPONSE_CODE%
//     %RESPONSE_CODE_DETAILS%; then prepareLocalReply's content-type rule);
//     Envoy versions (Options.EnvoyVersion) and the bootstrap's
//     layered_runtime static layer for the one guard
//     envoy.reloadable_features.skip_ext_proc_on_local_reply: on 1.34–1.36
//     (default true) Envoy's own local replies skip ext_proc, from 1.37 on
//     they pass through it; stdout access logs with json_format/text_format and
//     %START_TIME% %REQ(x)% %RESP(x)% %RESPONSE_CODE% %RESPONSE_FLAGS%
//     %RESPONSE_CODE_DETAILS% %DURATION% %UPSTREAM_CLUSTER% %PROTOCOL%
//     %DYNAMIC_METADATA(ns:key)% %TRACE_ID%.
//   - HCM tracing with the OpenTelemetry tracer (tracing.go; provider
//     envoy.tracers.opentelemetry with grpc_service or http_service, never
//     called, and service_name; random_sampling): the sampling decision from
//     x-request-id and its trace byte ('9', 'b' for x-client-trace-id); the
//     request span, a child of a valid client traceparent (same trace, new
//     span id, the parent's sampled flag and tracestate; from 1.39 a negative
//     decision clears the flag) or a new trace, none (NullSpan) for a
//     traceparent the extractor rejects; the ext_proc stream's child span in
//     its initial metadata (traceparent, tracestate); the router's injection
//     of the request span into the upstream request and the downstream
//     request headers; %TRACE_ID%. EnableTracing adds such a block to a
//     bootstrap's ingress and egress listeners. No span is exported.
//     The tracing block may also carry what Istio writes (client_sampling
//     and overall_sampling at 100%, custom_tags, max_path_tag_length).
//   - HCM tracing with the Zipkin tracer (zipkin.go; provider
//     envoy.tracers.zipkin: collector_cluster + collector_endpoint, or
//     collector_service from 1.36, the cluster checked to exist;
//     collector_endpoint_version HTTP_JSON/HTTP_PROTO, collector_hostname,
//     trace_id_128bit, shared_span_context; trace_context_option USE_B3
//     only): B3 propagation. The request span continues the client's b3
//     header, else x-b3-traceid + x-b3-spanid (sharing the client's span id
//     under shared_span_context, the default), or starts a 64/128-bit trace
//     whose root span id is the trace id's low half; a header the extractor
//     rejects leaves a NullSpan; b3's flag or x-b3-sampled override the
//     decision. The ext_proc stream's child span (x-b3-traceid, x-b3-spanid,
//     x-b3-parentspanid, x-b3-sampled in its initial metadata), the
//     router's injection of the request span, %TRACE_ID% (16 or 32 hex
//     digits). EnableZipkinTracing adds such a block (and a collector
//     cluster "zipkin") to a bootstrap's ingress and egress listeners.
//   - Clusters STATIC / LOGICAL_DNS / STRICT_DNS with one endpoint, whose
//     address Options.Clusters overrides. An overridden cluster never uses
//     TLS (its transport_socket is dropped: the fakes speak plain HTTP);
//     http2_protocol_options ⇒ h2c; auto_config (ALPN) needs TLS and so
//     speaks HTTP/1.1 once TLS is dropped (LoopbackBootstrap rewrites it to
//     explicit HTTP/1.1 for real Envoy).
//   - ext_proc (§1–§3, §9): one lazily opened bidi stream per request;
//     protocol_config in the first message only; attributes only in the first
//     message per direction; metadata_context always; raw_value headers,
//     lowercase keys, pseudo-headers. Header SEND/SKIP; body NONE, BUFFERED,
//     STREAMED (pipelined, FIFO, consolidated pre-header data), BUFFERED_PARTIAL,
//     FULL_DUPLEX_STREAMED (immediate, M:N streamed_response, the server ends a
//     direction with end_of_stream or a trailers response; synthesized trailers
//     ignored; trailer mode SEND enforced at load); trailers only when real.
//     Per-direction callback states and the spurious rules of §2.1 (fail-closed
//     status_on_error or reset; failure_mode_allow incl. FULL_DUPLEX canFailOpen);
//     OK close ⇒ continue unmodified; non-OK ⇒ status_on_error unless fail-open;
//     message timeout per direction (none in FULL_DUPLEX) ⇒ 504,
//     override_message_timeout; mutation rules (§2.3) and content-length rules
//     (§2.5); CONTINUE_AND_REPLACE; ImmediateResponse and
//     StreamedImmediateResponse (§2.7, §2.8; the latter from Envoy 1.37 on,
//     spurious before, its dynamic_metadata applied); mode_override incl. the v1.40
//     standalone form (§2.10, requires allow_mode_override here);
//     clear_route_cache / route_cache_action (§2.13) re-running route selection;
//     dynamic_metadata for receiving_namespaces.untyped (§2.9).
//   - Upstream failures (§4.2): reset before response headers ⇒ 503 local
//     reply through the encoder chain; headers held by ext_proc ⇒ direct 503;
//     headers already sent ⇒ the client stream is reset (HTTP/1: connection
//     aborted mid-body; h2: RST_STREAM). In the last two cases ext_proc gets no
//     message and its stream is cancelled.
//   - Counters (Sim.Stats): streams_started, streams_closed, streams_failed,
//     stream_msgs_sent, stream_msgs_received, spurious_msgs_received,
//     rejected_header_mutations, message_timeouts, failure_mode_allowed,
//     clear_route_cache_ignored, clear_route_cache_disabled,
//     override_message_timeout_received/ignored, downstream_rq_*, upstream_rq_*.
//
// # Refused (Start returns an *UnsupportedError naming the field)
//
// Any field not listed above, e.g. local_reply_config headers_to_add with
// an append_action other than OVERWRITE_IF_EXISTS_OR_ADD,
// runtime-keyed status filters, typed JSON (a lone command), runtime keys
// other than the guard, other HTTP or network filters, regex or
// header route matches, redirects, RDS/xDS, route retry_policy, ext_proc
// grpc_service.retry_policy (§6 #27), google_grpc, http_service,
// observability_mode, send_body_without_waiting_for_header_response,
// forward_rules, typed metadata forwarding, upstream HTTP filters such as
// ext_proc in a cluster (§6 #28), more than one endpoint per cluster,
// HTTP/3, unknown access log commands, and any cluster whose endpoint is not
// loopback and has no override.
//
// # Known differences from Envoy
//
//   - xds.route_metadata is rendered in protobuf text format like C++
//     ShortDebugString (map entries sorted, single spaces); other attributes:
//     xds.route_name, xds.virtual_host_name, xds.cluster_name, request.path,
//     request.url_path, request.host, request.scheme, request.method,
//     request.id, request.protocol, response.code.
//   - The stream-close optimisation (§1.1) is not modelled: the gRPC stream
//     is closed when processing completes (immediate response, error, OK
//     close) or when the HTTP exchange ends.
//   - A client request body is delivered in 32 KiB reads; the end of stream
//     can arrive as a separate empty chunk (as with HTTP/2 DATA frames).
//   - When the whole body arrives before the headers response in STREAMED or
//     BUFFERED_PARTIAL mode it is sent as one BUFFERED message whose
//     end_of_stream is false if trailers follow.
//   - Headers are handed over in sorted order (Go does not keep the order);
//     x-forwarded-for, server and date handling are Go's; Envoy's
//     x-envoy-expected-rq-timeout-ms (upstream) and
//     x-envoy-upstream-service-time (response) are added.
//   - Circuit breakers, connect timeouts, load balancing and DNS are ignored.
//   - An HTTP/2 request with content-length: 0 is taken as HEADERS with
//     END_STREAM (net/http does not tell them apart): no body message even
//     if an empty DATA frame with END_STREAM follows.
//   - use_remote_address true (internal requests, edge request ids,
//     x-forwarded-for) and gRPC-shaped local replies (is_grpc) are not
//     modelled; the router obeys no x-envoy-* request header but
//     x-envoy-upstream-rq-timeout-ms; ImmediateResponse.grpc_status is ignored, as Envoy does for
//     non-gRPC requests.
//   - A streamed_response in BUFFERED / BUFFERED_PARTIAL mode is treated as
//     spurious; Envoy applies it as "no body mutation" (after the
//     content-length check against an empty body).
//   - A response that completes before its request is reset: on HTTP/1
//     the connection is closed after the response, gracefully (net/http's
//     half-close and wait stand in for Envoy's delayed_close_timeout), so
//     the client reads the response; on HTTP/2 the stream is reset.
//
// StartGateway runs a real envoy binary instead when one is on PATH (and
// LLMUX_E2E_ENVOY != "sim"), using LoopbackBootstrap to point it at the
// same loopback fakes.
package envoysim
