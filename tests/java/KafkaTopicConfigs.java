// Topic configs as Kafka's own Java admin client sees and makes them, to judge what offload-bridge's
// `topics create`, `check` and `apply` did. Run as a one-file program:
//   java -cp '.kafka/libs/*' tests/java/KafkaTopicConfigs.java describe BOOTSTRAP TOPIC...
//     prints "<topic>\t<config>\t<value>" for every config in effect (Admin.describeConfigs)
//   java -cp '.kafka/libs/*' tests/java/KafkaTopicConfigs.java create BOOTSTRAP TOPIC PARTITIONS NAME=VALUE...
//     creates the topic with those configs (Admin.createTopics), replication factor 1
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.config.ConfigResource;

public class KafkaTopicConfigs {
    public static void main(String[] args) throws Exception {
        Properties properties = new Properties();
        properties.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        properties.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(properties)) {
            if (args[0].equals("describe")) {
                describe(admin, Arrays.asList(args).subList(2, args.length));
            } else if (args[0].equals("create")) {
                create(admin, args[2], Integer.parseInt(args[3]), Arrays.asList(args).subList(4, args.length));
            } else {
                throw new IllegalArgumentException("expected describe or create, got " + args[0]);
            }
        }
    }

    static void describe(Admin admin, List<String> topics) throws Exception {
        List<ConfigResource> resources = new ArrayList<>();
        for (String topic : topics) resources.add(new ConfigResource(ConfigResource.Type.TOPIC, topic));
        Map<ConfigResource, Config> described = admin.describeConfigs(resources).all().get();
        StringBuilder out = new StringBuilder();
        for (ConfigResource resource : resources) {
            for (ConfigEntry entry : described.get(resource).entries()) {
                out.append(resource.name()).append('\t').append(entry.name()).append('\t')
                    .append(entry.value()).append('\n');
            }
        }
        System.out.print(out);
    }

    static void create(Admin admin, String topic, int partitions, List<String> configs) throws Exception {
        Map<String, String> wanted = new HashMap<>();
        for (String config : configs) {
            String[] pair = config.split("=", 2);
            wanted.put(pair[0], pair[1]);
        }
        NewTopic request = new NewTopic(topic, partitions, (short) 1).configs(wanted);
        admin.createTopics(List.of(request)).all().get();
    }
}
