package io.jvhost.cli;

import java.lang.reflect.InvocationHandler;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;

/**
 * SIGTERM and SIGINT handled by jvhost itself (through {@code sun.misc.Signal} of the exported
 * {@code jdk.unsupported} module), so that a stop runs before JVM shutdown begins: the flight
 * recorder's own shutdown hook stops every recording at the start of JVM shutdown, and the events of
 * the final session end (session disconnected, rings stopped) would otherwise miss the {@code --jfr}
 * file. Reflection, because javac reports any direct use of {@code sun.misc} as a warning, and
 * warnings fail this build. Where the API is missing, the caller's shutdown hook still stops jvhost.
 */
final class StopSignals {
    private StopSignals() {
    }

    /** Runs {@code onStop} (on the JVM's signal thread) for SIGTERM and SIGINT; false when not possible. */
    static boolean install(Runnable onStop) {
        try {
            Class<?> signal = Class.forName("sun.misc.Signal");
            Class<?> handlerType = Class.forName("sun.misc.SignalHandler");
            InvocationHandler ih = (Object proxy, Method m, Object[] args) -> {
                if (m.getName().equals("handle")) {
                    onStop.run();
                    return null;
                }
                return switch (m.getName()) {
                    case "hashCode" -> System.identityHashCode(proxy);
                    case "equals" -> proxy == args[0];
                    case "toString" -> "jvhost stop handler";
                    default -> null;
                };
            };
            Object handler = Proxy.newProxyInstance(StopSignals.class.getClassLoader(), new Class<?>[]{handlerType}, ih);
            Method handle = signal.getMethod("handle", signal, handlerType);
            for (String name : new String[]{"TERM", "INT"}) {
                handle.invoke(null, signal.getConstructor(String.class).newInstance(name), handler);
            }
            return true;
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            return false;
        }
    }
}
