import '@fontsource/cinzel/latin-400.css';
import '@fontsource/cinzel/latin-600.css';

import { AppRegistry } from 'react-native';

import { App } from './App';

AppRegistry.registerComponent('aerekos', () => App);
AppRegistry.runApplication('aerekos', { rootTag: document.getElementById('root') });
