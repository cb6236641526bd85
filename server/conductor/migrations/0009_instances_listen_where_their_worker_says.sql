-- Built-in services' instances listen where their worker says (AEREKOS_INSTANCE_HOST: loopback on
-- a worker that serves plain HTTP). Instances placed before that carry the catalog's old pin to
-- every interface in their spec, which would keep them reachable in plain HTTP: it is dropped.
UPDATE instances SET spec = json_remove(spec, '$.env.KEY_MANAGER_HOST')
    WHERE service = 'key_manager' AND json_extract(spec, '$.env.KEY_MANAGER_HOST') = '0.0.0.0';
UPDATE instances SET spec = json_remove(spec, '$.env.STORAGE_MANAGER_HOST')
    WHERE service = 'storage_manager' AND json_extract(spec, '$.env.STORAGE_MANAGER_HOST') = '0.0.0.0';
