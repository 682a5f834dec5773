// The ACLs a cluster holds, as Kafka's own Java admin client lists them, to judge what offload-bridge's
// `acls --apply` created. Run as a one-file program with a principal allowed to describe ACLs:
//   java -cp '.kafka/libs/*' tests/java/KafkaAcls.java BOOTSTRAP
//     prints "<principal>\t<resource type>\t<name>\t<pattern type>\t<operation>\t<host>\t<permission>" per ACL
import java.util.Collection;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;

public class KafkaAcls {
    public static void main(String[] args) throws Exception {
        Properties properties = new Properties();
        properties.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        properties.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(properties)) {
            Collection<AclBinding> bindings = admin.describeAcls(AclBindingFilter.ANY).values().get();
            StringBuilder out = new StringBuilder();
            for (AclBinding binding : bindings) {
                out.append(binding.entry().principal()).append('\t')
                    .append(binding.pattern().resourceType()).append('\t')
                    .append(binding.pattern().name()).append('\t')
                    .append(binding.pattern().patternType()).append('\t')
                    .append(binding.entry().operation()).append('\t')
                    .append(binding.entry().host()).append('\t')
                    .append(binding.entry().permissionType()).append('\n');
            }
            System.out.print(out);
        }
    }
}
