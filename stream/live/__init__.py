"""Live audio: the session, the stream's life and its audio callback, devices and JACK, the
keyboard, monitor and panel, --play and --record, and live control (OSC). The only room that
imports sounddevice, and only when a stream or a device list is needed."""
