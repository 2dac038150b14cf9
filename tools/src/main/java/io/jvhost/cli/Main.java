package io.jvhost.cli;

/** Entry point of the {@code jvhost} command. */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) {
        System.out.println("jvhost 0.1.0-SNAPSHOT");
    }
}
