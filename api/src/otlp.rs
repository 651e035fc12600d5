//! OTLP span export (the `otlp` cargo feature): with `OTEL_EXPORTER_OTLP_ENDPOINT` set
//! (`http://collector:4318`), every `tracing` span (one per HTTP request, with its request
//! id) is sent over OTLP/HTTP as service `streamrec` (or `OTEL_SERVICE_NAME`). Export runs
//! on the SDK's own thread in batches, never on a request.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The layer that exports spans, when an endpoint is configured.
pub fn layer<S>() -> Option<impl Layer<S>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()?;
    let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(&traces)
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            // Logging is not up yet: this is the one place stderr is written directly.
            eprintln!("OTLP export to {traces} not started: {error}");
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "streamrec".to_owned());
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("streamrec");
    opentelemetry::global::set_tracer_provider(provider);
    Some(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Makes `span` a child of the client's span, so the exported trace continues the
/// client's (without a valid `traceparent`, the span starts a trace of its own).
pub fn continue_trace(span: &tracing::Span, parent: &crate::trace_context::TraceParent) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let (Ok(trace_id), Ok(span_id), Ok(flags)) = (
        TraceId::from_hex(&parent.trace_id),
        SpanId::from_hex(&parent.parent_id),
        u8::from_str_radix(&parent.flags, 16),
    ) else {
        return;
    };
    let remote = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The current `tracing` span's OpenTelemetry context as a `traceparent`, when it is being
/// exported (sampled, valid ids).
pub fn current_span() -> Option<crate::trace_context::TraceParent> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let span = context.span();
    let ids = span.span_context();
    ids.is_valid().then(|| crate::trace_context::TraceParent {
        trace_id: ids.trace_id().to_string(),
        parent_id: ids.span_id().to_string(),
        flags: format!("{:02x}", ids.trace_flags().to_u8()),
    })
}
