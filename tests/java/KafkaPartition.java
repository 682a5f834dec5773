// The partition Kafka's own Java producer gives a key: BuiltInPartitioner.partitionForKey, the code path
// of KafkaProducer.send for a keyed record without an explicit partition. Run as a one-file program:
//   java -cp '.kafka/libs/*' tests/java/KafkaPartition.java < lines
// Each input line is "<partitions> <base64 key>"; each output line is the partition.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;

public class KafkaPartition {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder out = new StringBuilder();
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            if (line.isBlank()) continue;
            String[] fields = line.trim().split(" ", 2);
            int partitions = Integer.parseInt(fields[0]);
            byte[] key = fields.length > 1 ? Base64.getDecoder().decode(fields[1]) : new byte[0];
            out.append(BuiltInPartitioner.partitionForKey(key, partitions)).append('\n');
        }
        System.out.print(out);
    }
}
