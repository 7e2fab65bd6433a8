"""OpenTelemetry traces read from Kafka: OTLP messages decoded into columns of spans."""
