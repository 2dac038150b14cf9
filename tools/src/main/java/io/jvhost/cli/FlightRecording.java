package io.jvhost.cli;

import io.jvhost.jfr.JvhostEvents;
import jdk.jfr.Configuration;
import jdk.jfr.Recording;

import java.io.IOException;
import java.nio.file.Path;
import java.text.ParseException;

/**
 * {@code --jfr=FILE}: a flight recording with the JDK's {@code default} settings (about 1 % overhead)
 * plus every jvhost event ({@link JvhostEvents#TYPES}), written to FILE when jvhost stops.
 */
final class FlightRecording {
    private FlightRecording() {
    }

    static Recording start(Path file) {
        try {
            Recording r = new Recording(Configuration.getConfiguration("default"));
            r.setName("jvhost");
            JvhostEvents.TYPES.forEach(r::enable);
            r.setToDisk(true);
            r.setDestination(file);
            r.start();
            return r;
        } catch (IOException | ParseException e) {
            throw new IllegalArgumentException("--jfr=" + file + ": " + e.getMessage(), e);
        }
    }
}
