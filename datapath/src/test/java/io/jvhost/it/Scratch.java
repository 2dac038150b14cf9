package io.jvhost.it;

import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The scratch of one real-peer test: a fresh temp directory, a vhost-user socket path in it and a
 * random tap name. Register it as an instance field ({@code @RegisterExtension final Scratch s =
 * new Scratch("jvq", "vhost.sock")}): JUnit makes a new test instance, hence a new scratch, for
 * every test method, and deletes the directory after each, whether the test passed or not. The tap
 * is the test's to remove (it lives in a namespace the test closes).
 */
public final class Scratch implements AfterEachCallback {
    private final Path dir;
    private final Path socket;
    private final String tap;

    /**
     * @param tapPrefix  2-4 letters naming the test's taps (a tap name has at most 15 characters)
     * @param socketName the socket's file name inside the directory
     */
    public Scratch(String tapPrefix, String socketName) {
        try {
            dir = Files.createTempDirectory("jvhost-it-");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        socket = dir.resolve(socketName);
        tap = tapPrefix + Cmd.randomHex(3);
    }

    public Path dir() {
        return dir;
    }

    public Path socket() {
        return socket;
    }

    public String tap() {
        return tap;
    }

    @Override
    public void afterEach(ExtensionContext context) {
        Cmd.deleteTree(dir);
    }
}
